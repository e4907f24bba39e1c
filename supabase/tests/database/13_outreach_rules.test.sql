-- The outreach rules record_form_submission applies (migration 20261129000000_outreach_rules):
-- consent is final (opted out, paused: skipped), a live conversation is not restarted (skipped
-- within the cooldown, accepted after it), and the day's limit holds forms past it. Only an
-- accepted submission is queued; every outcome is kept with its reason.
begin;
select plan(69);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other tables
delete from public.outreach_days;

set local role service_role;
create temp table res (step text primary key, r jsonb);

-- Consent is final --------------------------------------------------------------------------------
insert into public.chat_sessions (customer_key, opted_out_at) values ('525511110001', now() - interval '3 days');
insert into res values ('optout', public.record_form_submission('k-optout', '525511110001', '+525511110001', 'Olga', true));
select is((select r - 'submission_id' from res where step = 'optout'),
  '{"is_new": true, "status": "skipped", "outcome_reason": "opted_out"}'::jsonb,
  'an opted-out customer''s form is recorded as skipped: opted_out');
select results_eq(
  $$select status, outcome_reason, name from public.form_submissions where idempotency_key = 'k-optout'$$,
  $$values ('skipped', 'opted_out', 'Olga')$$,
  'the skipped submission is kept with its reason and what was entered');
select is((select name from public.chat_sessions where customer_key = '525511110001'), null::text,
  'an opted-out customer''s session is not touched');
select is((select count(*)::int from public.outreach_days), 0, 'a skipped form does not count towards the day');

insert into public.chat_sessions (customer_key, name, paused_until)
values ('525511110002', 'Pablo', now() + interval '2 hours');
insert into res values ('paused', public.record_form_submission('k-paused', '525511110002', '+525511110002', 'Pablo R.', true));
select is((select r - 'submission_id' from res where step = 'paused'),
  '{"is_new": true, "status": "skipped", "outcome_reason": "paused"}'::jsonb,
  'a form for a customer a person has taken over is skipped: paused');
select is((select name from public.chat_sessions where customer_key = '525511110002'), 'Pablo',
  'a paused customer is not renamed');

insert into public.chat_sessions (customer_key, paused_until) values ('525511110003', now() - interval '1 minute');
insert into res values ('unpaused', public.record_form_submission('k-unpaused', '525511110003', '+525511110003', 'Paz', true));
select is((select r->>'status' from res where step = 'unpaused'), 'queued', 'a pause that is over does not hold a form back');

-- Opted out and live at once: consent comes first.
insert into public.chat_sessions (customer_key, opted_out_at, last_inbound_at)
values ('525511110004', now() - interval '1 hour', now() - interval '1 hour');
select is((public.record_form_submission('k-both', '525511110004', '+525511110004', 'Bea', true))->>'outcome_reason',
  'opted_out', 'an opted-out customer who wrote recently is skipped as opted_out');

-- A live conversation is not restarted --------------------------------------------------------------
insert into public.chat_sessions (customer_key, last_inbound_at) values ('525511110005', now() - interval '3 hours');
insert into res values ('wrote', public.record_form_submission('k-wrote', '525511110005', '+525511110005', 'Wendy', true));
select is((select r - 'submission_id' from res where step = 'wrote'),
  '{"is_new": true, "status": "skipped", "outcome_reason": "conversation_live"}'::jsonb,
  'a customer who wrote within the cooldown is skipped: conversation_live');
select results_eq(
  $$select name, phone_e164 from public.chat_sessions where customer_key = '525511110005'$$,
  $$values ('Wendy', '+525511110005')$$,
  'a skipped live customer without a name gets the form''s name and phone');

insert into public.chat_sessions (customer_key, name, phone_e164, last_outbound_at)
values ('525511110006', 'Ana', '+525511110006', now() - interval '20 hours');
insert into res values ('written', public.record_form_submission('k-written', '525511110006', '+525511110006', 'Ana María', true));
select is((select r->>'outcome_reason' from res where step = 'written'), 'conversation_live',
  'a customer the bridge wrote to within the cooldown is skipped: conversation_live');
select is((select name from public.chat_sessions where customer_key = '525511110006'), 'Ana',
  'a skipped live customer keeps their name');

-- The cooldown is a parameter: three hours ago is outside a two-hour cooldown.
select is((public.record_form_submission('k-wrote-2', '525511110005', '+525511110005', 'Wendy', true, '{}', 7200))->>'status',
  'queued', 'with a two-hour cooldown, a message three hours old does not hold a form back');
select is((public.record_form_submission('k-zero', '525511110006', '+525511110006', 'Ana', true, '{}', 0))->>'status',
  'queued', 'a cooldown of 0 never skips');

-- A form accepted, then another within the cooldown.
insert into res values ('first', public.record_form_submission('k-first', '525511110007', '+525511110007', 'Fer', true,
  '{"producto": "auto"}'));
select is((select r - 'submission_id' from res where step = 'first'),
  '{"is_new": true, "status": "queued", "outcome_reason": null}'::jsonb, 'a new customer''s form is accepted (queued)');
insert into res values ('second', public.record_form_submission('k-second', '525511110007', '+525511110007', 'Fernanda', true,
  '{"producto": "moto"}'));
select is((select r - 'submission_id' from res where step = 'second'),
  '{"is_new": true, "status": "skipped", "outcome_reason": "conversation_live"}'::jsonb,
  'a second form within the cooldown of an accepted one is skipped: conversation_live');
select is((select name from public.chat_sessions where customer_key = '525511110007'), 'Fer',
  'the skipped form does not rename the customer');
select is((select count(*)::int from public.form_submissions where customer_key = '525511110007' and status = 'queued'), 1,
  'only the accepted submission is queued');
select is((public.record_form_submission('k-second', '525511110007', '+525511110007', 'Fernanda', true))
          - 'submission_id',
  '{"is_new": false, "status": "skipped", "outcome_reason": "conversation_live"}'::jsonb,
  'the skipped form posted again answers its recorded outcome');

-- Started and written to: still live. After the cooldown a new form is accepted (a new chat).
update public.form_submissions set status = 'started', chat_id = 'chat_fer_1' where idempotency_key = 'k-first';
update public.chat_sessions set last_outbound_at = now() - interval '1 hour' where customer_key = '525511110007';
select is((public.record_form_submission('k-third', '525511110007', '+525511110007', 'Fer', true))->>'status',
  'skipped', 'a started outreach an hour ago keeps the conversation live');
update public.form_submissions set created_at = now() - interval '25 hours' where customer_key = '525511110007';
update public.chat_sessions set last_outbound_at = now() - interval '25 hours' where customer_key = '525511110007';
insert into res values ('later', public.record_form_submission('k-later', '525511110007', '+525511110007', 'Fernanda', true));
select is((select r - 'submission_id' from res where step = 'later'),
  '{"is_new": true, "status": "queued", "outcome_reason": null}'::jsonb,
  'after the cooldown a new form is accepted');
select is((select name from public.chat_sessions where customer_key = '525511110007'), 'Fernanda',
  'the accepted form renames the customer');

-- Failed, skipped and held forms do not keep a conversation live.
insert into public.chat_sessions (customer_key) values ('525511110008');
insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status, failure_reason)
values ('k-failed-before', '525511110008', '+525511110008', 'Gil', true, 'failed', 'Retell answered 500');
insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status, outcome_reason)
values ('k-held-before', '525511110008', '+525511110008', 'Gil', true, 'held', 'daily_limit');
select is((public.record_form_submission('k-after-failed', '525511110008', '+525511110008', 'Gil', true))->>'status',
  'queued', 'a failed or held form for the customer does not skip a new one');

-- The day's limit -----------------------------------------------------------------------------------
select is((select contacted from public.outreach_days where day = (now() at time zone 'UTC')::date), 6,
  'each accepted form counted once towards the day (UTC)');
select is((public.record_form_submission('k-limit-1', '525511110101', '+525511110101', 'Hugo', true, '{}', 86400, 7))->>'status',
  'queued', 'below the limit a form is accepted');
insert into res values ('held', public.record_form_submission('k-limit-2', '525511110102', '+525511110102', 'Inés', true,
  '{}', 86400, 7));
select is((select r - 'submission_id' from res where step = 'held'),
  '{"is_new": true, "status": "held", "outcome_reason": "daily_limit"}'::jsonb,
  'past the limit a form is held: daily_limit');
select results_eq(
  $$select status, outcome_reason, name from public.form_submissions where idempotency_key = 'k-limit-2'$$,
  $$values ('held', 'daily_limit', 'Inés')$$,
  'the held submission is kept');
select is((select contacted from public.outreach_days where day = (now() at time zone 'UTC')::date), 7,
  'a held form is not counted');
select is((public.record_form_submission('k-limit-2', '525511110102', '+525511110102', 'Inés', true, '{}', 86400, 100))
          - 'submission_id',
  '{"is_new": false, "status": "held", "outcome_reason": "daily_limit"}'::jsonb,
  'a held form posted again stays held (answers its outcome, counts nothing)');
select is((public.record_form_submission('k-limit-3', '525511110103', '+525511110103', 'Juan', true, '{}', 86400, 8))->>'status',
  'queued', 'a higher limit lets the next form through');
select is((public.record_form_submission('k-limit-4', '525511110104', '+525511110104', 'Kim', true, '{}', 86400, 0))->>'status',
  'held', 'a limit of 0 holds every form');
select is((public.record_form_submission('k-limit-5', '525511110001', '+525511110001', 'Olga', true, '{}', 86400, 0))->>'status',
  'skipped', 'an opted-out customer is skipped, not held, when the day is full');
update public.outreach_days set day = day - 1;
select is((public.record_form_submission('k-limit-6', '525511110105', '+525511110105', 'Lía', true, '{}', 86400, 1))->>'status',
  'queued', 'a new day starts a new count');
select is((select contacted from public.outreach_days where day = (now() at time zone 'UTC')::date), 1,
  'the new day counted one');

-- Bad limits.
select throws_ok($$select public.record_form_submission('k-bad-1', '525511110201', '+525511110201', 'Mo', true, '{}', -1)$$,
  '22023', null, 'a negative cooldown raises 22023');
select throws_ok($$select public.record_form_submission('k-bad-2', '525511110201', '+525511110201', 'Mo', true, '{}', 60, -1)$$,
  '22023', null, 'a negative daily limit raises 22023');
select throws_ok($$select public.record_form_submission('k-bad-3', '525511110201', '+525511110201', 'Mo', true, '{}', null, 5)$$,
  '22023', null, 'a null cooldown raises 22023');
select is((select count(*)::int from public.form_submissions where idempotency_key like 'k-bad-%'), 0,
  'the refused calls stored nothing');
-- The checks of the first version still come first.
select throws_ok($$select public.record_form_submission('k-noconsent', '525511110202', '+525511110202', 'Ni', false)$$,
  '23514', null, 'no consent still raises 23514');

-- The job re-checks: skip_form_submission, and what fail_form_submission leaves alone ---------------
select is(public.skip_form_submission((select (r->>'submission_id')::uuid from res where step = 'later'), 'opted_out'), true,
  'a queued submission is skipped by the job');
select results_eq(
  $$select status, outcome_reason from public.form_submissions where idempotency_key = 'k-later'$$,
  $$values ('skipped', 'opted_out')$$,
  'it is skipped with the reason');
select is(public.skip_form_submission((select (r->>'submission_id')::uuid from res where step = 'later'), 'paused'), false,
  'a skipped submission is not skipped again');
select is((select outcome_reason from public.form_submissions where idempotency_key = 'k-later'), 'opted_out',
  'the first reason stays');
update public.form_submissions set status = 'failed', failure_reason = 'Graph answered 500' where idempotency_key = 'k-unpaused';
select is(public.skip_form_submission((select (r->>'submission_id')::uuid from res where step = 'unpaused'), 'paused'), true,
  'a failed submission is skipped when retried');
select results_eq(
  $$select status, outcome_reason, failure_reason from public.form_submissions where idempotency_key = 'k-unpaused'$$,
  $$values ('skipped', 'paused', null::text)$$,
  'skipped, without the old failure');
select is(public.skip_form_submission((select (r->>'submission_id')::uuid from res where step = 'held'), 'paused'), false,
  'a held submission is not skipped');
select is(public.skip_form_submission(gen_random_uuid(), 'paused'), false, 'an unknown submission is not skipped');
select throws_ok(format($$select public.skip_form_submission(%L, 'daily_limit')$$,
    (select (r->>'submission_id')::uuid from res where step = 'first')),
  '22023', null, 'daily_limit is not a reason to skip');
select throws_ok(format($$select public.skip_form_submission(%L, null)$$,
    (select (r->>'submission_id')::uuid from res where step = 'first')),
  '22023', null, 'a null reason raises 22023');
select is(public.fail_form_submission((select (r->>'submission_id')::uuid from res where step = 'held'), 'boom'), false,
  'a held submission is not failed');
select is(public.fail_form_submission((select (r->>'submission_id')::uuid from res where step = 'optout'), 'boom'), false,
  'a skipped submission is not failed');
select results_eq(
  $$select status, failure_reason from public.form_submissions where idempotency_key in ('k-limit-2', 'k-optout') order by 1$$,
  $$values ('held', null::text), ('skipped', null::text)$$,
  'they keep their outcome');

-- Constraints ------------------------------------------------------------------------------------------
select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status)
    values ('k-c1', '525511110007', '+525511110007', 'X', true, 'skipped')$$,
  '23514', null, 'a skipped submission needs its reason');
select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status, outcome_reason)
    values ('k-c2', '525511110007', '+525511110007', 'X', true, 'held', 'opted_out')$$,
  '23514', null, 'a held submission is held for the daily limit only');
select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status, outcome_reason)
    values ('k-c3', '525511110007', '+525511110007', 'X', true, 'queued', 'paused')$$,
  '23514', null, 'a queued submission has no outcome reason');
select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status, outcome_reason)
    values ('k-c4', '525511110007', '+525511110007', 'X', true, 'skipped', 'bored')$$,
  '23514', null, 'an unknown reason is refused');
select throws_ok($$insert into public.outreach_days (day, contacted) values ('2026-01-01', -1)$$,
  '23514', null, 'a day cannot count below zero');
reset role;

-- Privileges and documentation, as for the other tables and functions ----------------------------------
select ok((select relrowsecurity from pg_class where oid = 'public.outreach_days'::regclass), 'RLS enabled on outreach_days');
select is((select count(*)::int from pg_policy where polrelid = 'public.outreach_days'::regclass), 0,
  'no RLS policy opens outreach_days');
select table_privs_are('public', 'outreach_days', 'anon', array[]::text[], 'anon has no privilege on outreach_days');
select table_privs_are('public', 'outreach_days', 'authenticated', array[]::text[],
  'authenticated has no privilege on outreach_days');
select ok(has_table_privilege('service_role', 'public.outreach_days', 'select, insert, update, delete'),
  'service_role may use outreach_days');
select is(
  (select count(*)::int from pg_proc p
   where p.pronamespace = 'public'::regnamespace
     and p.proname in ('record_form_submission', 'skip_form_submission', 'fail_form_submission')
     and not p.prosecdef and p.proconfig @> array['search_path=""']
     and has_function_privilege('service_role', p.oid, 'execute')
     and not has_function_privilege('anon', p.oid, 'execute')
     and not has_function_privilege('authenticated', p.oid, 'execute')
     and not exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                     where a.grantee = 0 and a.privilege_type = 'EXECUTE')),
  3, 'the three functions run as the caller with an empty search_path, for service_role only');
select is((select count(*)::int from pg_proc where pronamespace = 'public'::regnamespace and proname = 'record_form_submission'),
  1, 'record_form_submission has one signature (no ambiguous overload)');
select is(
  (select count(*)::int from (values ('form_submissions', 'outcome_reason'), ('outreach_days', 'day'),
      ('outreach_days', 'contacted'), ('outreach_days', 'updated_at')) c(t, col)
   where col_description(('public.' || c.t)::regclass,
           (select attnum from pg_attribute where attrelid = ('public.' || c.t)::regclass and attname = c.col)) is null),
  0, 'every new column is documented');
set local role anon;
select throws_ok($$select public.record_form_submission('k-anon', '525511110301', '+525511110301', 'Ana', true)$$,
  '42501', null, 'anon cannot call record_form_submission');
select throws_ok(format($$select public.skip_form_submission(%L, 'paused')$$, gen_random_uuid()),
  '42501', null, 'anon cannot call skip_form_submission');
select throws_ok($$select * from public.outreach_days$$, '42501', null, 'anon cannot read outreach_days');
reset role;
set local role authenticated;
select throws_ok(format($$select public.skip_form_submission(%L, 'paused')$$, gen_random_uuid()),
  '42501', null, 'authenticated cannot call skip_form_submission');
reset role;

select * from finish();
rollback;
