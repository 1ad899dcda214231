import { Migration } from "@mikro-orm/migrations";

// Hand-written, committed, never regenerated. No `?` anywhere: knex would read it as a
// binding placeholder.
export class Migration20251127090000_movements extends Migration {
  override up(): void {
    // The sequence of the newest transaction of each balance, kept on the (locked) balance
    // row so that a movement never scans the history for MAX(sequence).
    this.addSql(`
      alter table account_balances
        add column last_sequence bigint not null default 0
          constraint account_balances_last_sequence_check check (last_sequence >= 0)`);
    this.addSql(`
      update account_balances b
         set last_sequence = coalesce((select max(t.sequence) from account_transactions t where t.account_balance_id = b.id), 0)`);

    // The owner of a transaction, copied from its balance (whose user_id never changes), so
    // that "my transactions, newest first" is one index range instead of a join and a sort.
    this.addSql(`alter table account_transactions add column user_id text null`);
    // Backfill is the one sanctioned change to history: it adds a derived column only.
    this.addSql(`alter table account_transactions disable trigger account_transactions_immutable`);
    this.addSql(`
      update account_transactions t
         set user_id = b.user_id
        from account_balances b
       where b.id = t.account_balance_id`);
    this.addSql(`alter table account_transactions enable trigger account_transactions_immutable`);
    this.addSql(`alter table account_transactions alter column user_id set not null`);
    // Filled by the database from the balance, whatever the writer sent: it cannot drift.
    this.addSql(`
      create function account_transactions_set_user_id() returns trigger language plpgsql as $fn$
      begin
        new.user_id := (select b.user_id from account_balances b where b.id = new.account_balance_id);
        return new;
      end
      $fn$`);
    this.addSql(`
      create trigger account_transactions_user_id
        before insert on account_transactions
        for each row execute function account_transactions_set_user_id()`);
    this.addSql(`
      create index account_transactions_user_history_idx
        on account_transactions (user_id, created_at desc, sequence desc, id desc)`);

    // Idempotency keys (spec section 6). A key row is inserted in the same database
    // transaction as the work it guards, so a second caller with the same key blocks on the
    // uncommitted row until the first commits (then replays it) or rolls back (then runs).
    this.addSql(`
      create table idempotency_keys (
        scope text not null,
        key text not null,
        fingerprint text not null,
        operation text not null,
        status text not null
          constraint idempotency_keys_status_check check (status in ('in_flight', 'done')),
        response jsonb null,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        constraint idempotency_keys_pkey primary key (scope, key)
      )`);
    this.addSql(`create index idempotency_keys_expires_at_idx on idempotency_keys (expires_at)`);
  }

  override down(): void {
    this.addSql(`drop table if exists idempotency_keys`);
    this.addSql(`drop index if exists account_transactions_user_history_idx`);
    this.addSql(`drop trigger if exists account_transactions_user_id on account_transactions`);
    this.addSql(`drop function if exists account_transactions_set_user_id()`);
    this.addSql(`alter table account_transactions drop column if exists user_id`);
    this.addSql(`alter table account_balances drop column if exists last_sequence`);
  }
}
