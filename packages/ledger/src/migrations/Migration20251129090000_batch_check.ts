import { Migration } from "@mikro-orm/migrations";

// Hand-written, committed, never regenerated. No `?` anywhere: knex would read it as a
// binding placeholder.
//
// A movement batch sends its one write in the same message as COMMIT (one round trip), so
// the check that it wrote exactly the rows it decided on can no longer run in the server
// between the two: the statement itself raises, and the transaction rolls back, when the
// counts differ. Arrays in a fixed order (balances, transactions, keys done, keys freed).
export class Migration20251129090000_batch_check extends Migration {
  override up(): void {
    this.addSql(`
      create function ledger_expect_written(wrote int[], decided int[]) returns int[]
        language plpgsql as $fn$
      begin
        if wrote is distinct from decided then
          raise exception 'the batch wrote % rows where it decided on %', wrote, decided
            using errcode = 'internal_error';
        end if;
        return wrote;
      end
      $fn$`);
  }

  override down(): void {
    this.addSql(`drop function ledger_expect_written(int[], int[])`);
  }
}
