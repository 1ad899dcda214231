import pg from "pg";

/** Runs one statement on its own connection: a view of the database independent of the ORM. */
export async function sql<R extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** The SQLSTATE and message of a failing statement. */
export async function sqlError(url: string, text: string, values: unknown[] = []): Promise<{ code: string; message: string }> {
  try {
    await sql(url, text, values);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { code: e.code ?? "", message: e.message ?? "" };
  }
  throw new Error(`statement succeeded: ${text}`);
}
