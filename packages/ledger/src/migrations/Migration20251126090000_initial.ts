import { Migration } from "@mikro-orm/migrations";

// Hand-written, committed, never regenerated. The database enforces the ledger's
// invariants itself so that no code path (nor a person with psql) can break them.
// No `?` anywhere: knex would read it as a binding placeholder.
const SAFE_CENTS = "9007199254740991"; // 2^53-1

export class Migration20251126090000_initial extends Migration {
  override up(): void {
    this.addSql(`
      create table account_balances (
        id text primary key,
        user_id text not null,
        organization_id text null,
        project_id text null,
        customer_id text null,
        balance_type text not null
          constraint account_balances_balance_type_check
          check (balance_type in ('general', 'credits', 'promotional', 'refund')),
        balance_cents bigint not null
          constraint account_balances_balance_cents_range_check
          check (balance_cents between -${SAFE_CENTS} and ${SAFE_CENTS}),
        currency char(3) not null
          constraint account_balances_currency_check check (currency ~ '^[A-Z]{3}$'),
        reference_code text null,
        status text not null
          constraint account_balances_status_check
          check (status in ('active', 'suspended', 'expired', 'closed')),
        expires_at timestamptz null,
        metadata jsonb not null default '{}'::jsonb
          constraint account_balances_metadata_check check (jsonb_typeof(metadata) = 'object'),
        version bigint not null default 1
          constraint account_balances_version_check check (version >= 1),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);
    // Partial: balances without a reference_code never collide.
    this.addSql(`
      create unique index account_balances_reference_code_unique
        on account_balances (user_id, currency, balance_type, reference_code)
        where reference_code is not null`);
    this.addSql(`create index account_balances_user_created_idx on account_balances (user_id, created_at, id)`);
    // The expiry sweeper and the admin "expiring" listing only ever look at active, dated balances.
    this.addSql(`
      create index account_balances_expiring_idx on account_balances (expires_at, id)
        where status = 'active' and expires_at is not null`);

    this.addSql(`
      create table account_transactions (
        id text primary key,
        account_balance_id text not null
          constraint account_transactions_account_balance_id_fkey
          references account_balances (id) on update restrict on delete restrict,
        transaction_type text not null
          constraint account_transactions_transaction_type_check
          check (transaction_type in ('credit', 'debit', 'transfer', 'expiration', 'adjustment')),
        amount_cents bigint not null
          constraint account_transactions_amount_cents_check
          check (amount_cents > 0 and amount_cents <= ${SAFE_CENTS}),
        balance_before_cents bigint not null
          constraint account_transactions_before_range_check
          check (balance_before_cents between -${SAFE_CENTS} and ${SAFE_CENTS}),
        balance_after_cents bigint not null
          constraint account_transactions_after_range_check
          check (balance_after_cents between -${SAFE_CENTS} and ${SAFE_CENTS}),
        currency char(3) not null
          constraint account_transactions_currency_check check (currency ~ '^[A-Z]{3}$'),
        description text null,
        reference_code text null,
        status text not null default 'completed'
          constraint account_transactions_status_check check (status in ('completed')),
        metadata jsonb not null default '{}'::jsonb
          constraint account_transactions_metadata_check check (jsonb_typeof(metadata) = 'object'),
        created_at timestamptz not null default now(),
        sequence bigint not null
          constraint account_transactions_sequence_check check (sequence >= 1),
        constraint account_transactions_sequence_unique unique (account_balance_id, sequence),
        -- The amount is the size of the move; the type fixes its direction where it has one.
        constraint account_transactions_movement_check check (
          abs(balance_after_cents - balance_before_cents) = amount_cents
          and balance_after_cents - balance_before_cents = case transaction_type
            when 'credit' then amount_cents
            when 'debit' then -amount_cents
            when 'expiration' then -amount_cents
            else balance_after_cents - balance_before_cents
          end
        )
      )`);
    this.addSql(`
      create index account_transactions_history_idx
        on account_transactions (account_balance_id, created_at desc, sequence desc)`);

    // History is append-only and balances are never deleted.
    this.addSql(`
      create function ledger_refuse_change() returns trigger language plpgsql as $fn$
      begin
        raise exception '% on % is not allowed: ledger rows are immutable', tg_op, tg_table_name
          using errcode = 'restrict_violation';
      end
      $fn$`);
    this.addSql(`
      create trigger account_transactions_immutable
        before update or delete on account_transactions
        for each row execute function ledger_refuse_change()`);
    this.addSql(`
      create trigger account_transactions_no_truncate
        before truncate on account_transactions
        for each statement execute function ledger_refuse_change()`);
    this.addSql(`
      create trigger account_balances_no_delete
        before delete on account_balances
        for each row execute function ledger_refuse_change()`);
    this.addSql(`
      create trigger account_balances_no_truncate
        before truncate on account_balances
        for each statement execute function ledger_refuse_change()`);

    this.addSql(`
      create table sessions (
        id text primary key constraint sessions_id_is_sha256_check check (id ~ '^[0-9a-f]{64}$'),
        user_id text not null,
        user_type text not null,
        email text null,
        name text null,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        revoked_at timestamptz null
      )`);
    this.addSql(`create index sessions_user_id_idx on sessions (user_id)`);
    this.addSql(`create index sessions_expires_at_idx on sessions (expires_at)`);
  }

  override down(): void {
    this.addSql(`drop table if exists sessions`);
    this.addSql(`drop table if exists account_transactions`);
    this.addSql(`drop table if exists account_balances`);
    this.addSql(`drop function if exists ledger_refuse_change()`);
  }
}
