import { Migration } from "@mikro-orm/migrations";

// Hand-written, committed, never regenerated. No `?` anywhere: knex would read it as a
// binding placeholder.
//
// The chain of spec section 6, enforced by the database itself: for every balance, its
// transactions in `sequence` order start at 0 and each starts where the previous ended, all
// in the balance's currency, and the newest one (at `last_sequence`) ends at `balance_cents`.
// Together with the immutable history (initial migration) and the per-row movement CHECK,
// a committed state that `integrity.verify()` would call drift cannot be written.
//
// The checks are DEFERRABLE INITIALLY DEFERRED constraint triggers: they run at COMMIT, once
// per inserted transaction and per balance whose money or sequence changed, against the
// state the whole database transaction left. So the writers need no particular statement
// order: a create inserts the balance and then its opening transaction; a movement updates
// the balance and inserts its row in one statement (data-modifying CTEs, whose parts do not
// see each other); a batch inserts several rows of one balance in one statement, in no
// guaranteed row order (a row-level BEFORE trigger would see the earlier rows of the same
// statement only in the order the executor happens to process them). Every check is an
// index probe: the balance by primary key, a transaction by the unique
// (account_balance_id, sequence) index. The existing rows are not re-checked here:
// `integrity.verify()` is the tool for history written before this migration.
export class Migration20251128090000_chain_constraints extends Migration {
  override up(): void {
    // One inserted transaction, at commit: in its balance's currency, not past the balance's
    // last_sequence (a row appended without moving the balance), and linked to the previous
    // row (or the first, starting at 0). With sequence >= 1 and (account_balance_id,
    // sequence) unique, this also makes sequences 1…n without gaps.
    this.addSql(`
      create function account_transactions_check_chain() returns trigger language plpgsql as $fn$
      declare
        bal record;
      begin
        select b.currency, b.last_sequence into bal from account_balances b where b.id = new.account_balance_id;
        if not found then
          raise exception 'transaction % has no balance', new.id
            using errcode = 'foreign_key_violation', constraint = 'account_transactions_chain';
        end if;
        if new.currency <> bal.currency then
          raise exception 'transaction % is in %, its balance in %', new.id, new.currency, bal.currency
            using errcode = 'check_violation', constraint = 'account_transactions_chain';
        end if;
        if new.sequence > bal.last_sequence then
          raise exception 'transaction % has sequence %, past the last_sequence % of its balance', new.id, new.sequence, bal.last_sequence
            using errcode = 'check_violation', constraint = 'account_transactions_chain';
        end if;
        if new.sequence = 1 then
          if new.balance_before_cents <> 0 then
            raise exception 'transaction % is the first of its balance but does not start at 0', new.id
              using errcode = 'check_violation', constraint = 'account_transactions_chain';
          end if;
        elsif not exists (
          select 1 from account_transactions p
           where p.account_balance_id = new.account_balance_id
             and p.sequence = new.sequence - 1
             and p.balance_after_cents = new.balance_before_cents
        ) then
          raise exception 'transaction % (sequence %) does not start where sequence % ended', new.id, new.sequence, new.sequence - 1
            using errcode = 'check_violation', constraint = 'account_transactions_chain';
        end if;
        return null;
      end
      $fn$`);
    this.addSql(`
      create constraint trigger account_transactions_chain
        after insert on account_transactions
        deferrable initially deferred
        for each row execute function account_transactions_check_chain()`);

    // One balance, at commit: its newest transaction is the one at last_sequence and ends
    // at balance_cents (none at all: last_sequence 0 and balance_cents 0). One backwards
    // probe of the unique index finds the newest row at or past last_sequence. The current
    // row is read again rather than trusting NEW: a balance changed twice in one database
    // transaction queues two events, and only the state at commit must hold.
    this.addSql(`
      create function account_balances_check_chain() returns trigger language plpgsql as $fn$
      declare
        cur record;
        newest record;
      begin
        select b.balance_cents, b.last_sequence into cur from account_balances b where b.id = new.id;
        if not found then
          return null;
        end if;
        select t.sequence, t.balance_after_cents into newest
          from account_transactions t
         where t.account_balance_id = new.id and t.sequence >= cur.last_sequence
         order by t.sequence desc
         limit 1;
        if not found then
          if cur.last_sequence <> 0 or cur.balance_cents <> 0 then
            raise exception 'balance % has no transaction at last_sequence % to end at balance_cents %', new.id, cur.last_sequence, cur.balance_cents
              using errcode = 'check_violation', constraint = 'account_balances_chain';
          end if;
        elsif newest.sequence <> cur.last_sequence then
          raise exception 'balance % has a transaction past last_sequence %', new.id, cur.last_sequence
            using errcode = 'check_violation', constraint = 'account_balances_chain';
        elsif newest.balance_after_cents <> cur.balance_cents then
          raise exception 'balance % has balance_cents % but its last transaction ends at %', new.id, cur.balance_cents, newest.balance_after_cents
            using errcode = 'check_violation', constraint = 'account_balances_chain';
        end if;
        return null;
      end
      $fn$`);
    this.addSql(`
      create constraint trigger account_balances_chain_insert
        after insert on account_balances
        deferrable initially deferred
        for each row execute function account_balances_check_chain()`);
    // A change of status, expiry or metadata alone (update, close) queues nothing.
    this.addSql(`
      create constraint trigger account_balances_chain_update
        after update on account_balances
        deferrable initially deferred
        for each row
        when (new.balance_cents is distinct from old.balance_cents or new.last_sequence is distinct from old.last_sequence)
        execute function account_balances_check_chain()`);

    // What the chain and the copied user_id rest on: a balance's id, owner and currency
    // never change. Checked at once, and only when one of them does (the WHEN costs nothing
    // otherwise).
    this.addSql(`
      create function account_balances_refuse_identity_change() returns trigger language plpgsql as $fn$
      begin
        raise exception 'the id, user_id and currency of a balance never change'
          using errcode = 'restrict_violation', constraint = 'account_balances_identity';
      end
      $fn$`);
    this.addSql(`
      create trigger account_balances_identity
        before update on account_balances
        for each row
        when (new.id is distinct from old.id or new.user_id is distinct from old.user_id
              or new.currency is distinct from old.currency)
        execute function account_balances_refuse_identity_change()`);
  }

  override down(): void {
    this.addSql(`drop trigger if exists account_balances_identity on account_balances`);
    this.addSql(`drop function if exists account_balances_refuse_identity_change()`);
    this.addSql(`drop trigger if exists account_balances_chain_update on account_balances`);
    this.addSql(`drop trigger if exists account_balances_chain_insert on account_balances`);
    this.addSql(`drop function if exists account_balances_check_chain()`);
    this.addSql(`drop trigger if exists account_transactions_chain on account_transactions`);
    this.addSql(`drop function if exists account_transactions_check_chain()`);
  }
}
