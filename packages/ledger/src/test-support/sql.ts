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

/**
 * Runs one statement with every trigger of this session off — the ledger's immutability and
 * chain triggers included, the deferred ones too (`session_replication_role = replica`, in
 * its own transaction; needs a superuser). Only for tests that corrupt the ledger on purpose
 * to prove that `integrity.verify()` finds it. Triggers that fill columns are off as well:
 * the statement must write every NOT NULL column itself (e.g. a transaction's user_id).
 */
export async function sqlBypassingTriggers<R extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("begin");
    await client.query("set local session_replication_role = replica");
    const rows = (await client.query<R>(text, values)).rows;
    await client.query("commit");
    return rows;
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}
