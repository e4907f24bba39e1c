-- Work that cannot be stranded, and dead letters that answer: claim_turn gives up only messages a
-- turn keeps dying on; fail_turn says when the sweeper may look again and whether the attempt
-- counts; defer_form_submission keeps a submission queued; sweep_stranded_work finds each kind of
-- stranded work once and gives up what waited too long; retry_failed puts failed work back.
-- Time is a transaction's now(): rows are backdated to make them old.
begin;
select plan(99);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other tables

-- The schema -------------------------------------------------------------------------------------
select has_column('public', 'chat_sessions', 'sweep_after', 'chat_sessions.sweep_after exists');
select has_column('public', 'form_submissions', 'sweep_after', 'form_submissions.sweep_after exists');
select has_column('public', 'whatsapp_messages', 'retried_at', 'whatsapp_messages.retried_at exists');
select has_column('public', 'form_submissions', 'retried_at', 'form_submissions.retried_at exists');
select is(
  (select count(*)::int from (values ('chat_sessions', 'sweep_after'), ('form_submissions', 'sweep_after'),
                                     ('whatsapp_messages', 'retried_at'), ('form_submissions', 'retried_at')) c (t, col)
   where col_description(('public.' || t)::regclass,
           (select attnum from pg_attribute where attrelid = ('public.' || t)::regclass and attname = col)) is not null),
  4, 'the new columns are documented');
select has_function('public', 'fail_turn', array['uuid', 'text', 'boolean', 'integer', 'boolean'],
  'fail_turn(turn, reason, retry, retry_in_seconds, count_attempt) exists');
select hasnt_function('public', 'fail_turn', array['uuid', 'text', 'boolean'],
  'the three-argument fail_turn is gone (no overload for PostgREST to choose between)');
select is((select count(*)::int from pg_proc where pronamespace = 'public'::regnamespace and proname = 'fail_turn'), 1,
  'fail_turn has one signature');
select has_function('public', 'claim_turn', array['text', 'integer', 'integer'], 'claim_turn keeps its signature');
select has_function('public', 'defer_form_submission', array['uuid', 'text', 'integer'], 'defer_form_submission exists');
select has_function('public', 'sweep_stranded_work', array['integer', 'integer', 'integer'], 'sweep_stranded_work exists');
select has_function('public', 'retry_failed', array['text', 'timestamp with time zone'], 'retry_failed exists');

-- Privileges: service_role only, as the caller, with an empty search_path, documented ---------------
create temporary view reliability_functions (oid) as
values ('public.claim_turn(text, integer, integer)'::regprocedure),
       ('public.fail_turn(uuid, text, boolean, integer, boolean)'::regprocedure),
       ('public.defer_form_submission(uuid, text, integer)'::regprocedure),
       ('public.sweep_stranded_work(integer, integer, integer)'::regprocedure),
       ('public.retry_failed(text, timestamptz)'::regprocedure);
select is(
  (select count(*)::int from reliability_functions f join pg_proc p on p.oid = f.oid
   where not p.prosecdef and p.proconfig = array['search_path=""']
     and has_function_privilege('service_role', p.oid, 'execute')
     and not has_function_privilege('anon', p.oid, 'execute')
     and not has_function_privilege('authenticated', p.oid, 'execute')
     and not exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                     where a.grantee = 0 and a.privilege_type = 'EXECUTE')
     and obj_description(p.oid, 'pg_proc') is not null),
  5, 'the five functions run as the caller with an empty search_path, for service_role only, documented');
select function_privs_are('public', 'sweep_stranded_work', array['integer', 'integer', 'integer'], 'anon',
  array[]::text[], 'anon may not sweep');
select function_privs_are('public', 'retry_failed', array['text', 'timestamp with time zone'], 'authenticated',
  array[]::text[], 'authenticated may not retry');
set local role anon;
select throws_ok($$select public.sweep_stranded_work()$$, '42501', null, 'anon cannot call sweep_stranded_work');
select throws_ok($$select public.retry_failed()$$, '42501', null, 'anon cannot call retry_failed');
select throws_ok($$select public.defer_form_submission(gen_random_uuid(), 'x', 1)$$, '42501', null,
  'anon cannot call defer_form_submission');
select throws_ok($$select public.fail_turn(gen_random_uuid(), 'x', true, 0, false)$$, '42501', null,
  'anon cannot call fail_turn');
reset role;
set local role authenticated;
select throws_ok($$select public.sweep_stranded_work()$$, '42501', null, 'authenticated cannot call sweep_stranded_work');
select throws_ok($$select public.retry_failed('525500000001')$$, '42501', null, 'authenticated cannot call retry_failed');
reset role;

set local role service_role;
create temp table res (step text primary key, r jsonb);
create temp table t (name text primary key, id uuid);

-- claim_turn: a turn that keeps dying gives its messages up ----------------------------------------------
insert into res values ('cl_in', public.record_inbound_messages($$[
  {"wamid": "wamid.CL1", "customer_key": "525500000001", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('cl1', public.claim_turn('525500000001', 300, 2));
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525500000001';
insert into res values ('cl2', public.claim_turn('525500000001', 300, 2));
select is((select r->'messages'->0->>'attempts' from res where step = 'cl2'), '2',
  'a message whose turn died is claimed again, its second attempt');
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525500000001';
select is(public.claim_turn('525500000001', 300, 2), '{"status": "idle", "messages": []}'::jsonb,
  'after the maximum attempts of turns that never finished, it is not claimed again');
select results_eq(
  $$select state, failure_reason, attempts, turn_id from public.whatsapp_messages where wamid = 'wamid.CL1'$$,
  $$values ('failed', 'gave up after 2 attempts: the turn never finished', 2, null::uuid)$$,
  'it is failed: the turn never finished');

-- ... but messages a turn put back wait whatever their attempts (the queue bounds the job).
insert into res values ('rl_in', public.record_inbound_messages($$[
  {"wamid": "wamid.RL1", "customer_key": "525500000002", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('rl1', public.claim_turn('525500000002', 300, 2));
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'rl1'), 'Retell answered 500', true, 2);
insert into res values ('rl2', public.claim_turn('525500000002', 300, 2));
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'rl2'), 'Retell answered 500', true, 10);
insert into res values ('rl3', public.claim_turn('525500000002', 300, 2));
select is((select r->>'status' || ' ' || (r->'messages'->0->>'attempts') from res where step = 'rl3'), 'claimed 3',
  'a released message past the maximum is claimed again (a redriven job answers it)');
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'rl3'), 'Retell answered 500', true, 30);
select is((select state || ' ' || attempts from public.whatsapp_messages where wamid = 'wamid.RL1'), 'pending 3',
  'released again, it still waits');
select is((select sweep_after from public.chat_sessions where customer_key = '525500000002'),
  now() + interval '30 seconds' + interval '1 minute', 'fail_turn with retry sets sweep_after to the retry plus a minute');
insert into res values ('rl4', public.claim_turn('525500000002', 300, 2));
select is((select sweep_after from public.chat_sessions where customer_key = '525500000002'), null,
  'claiming clears sweep_after');
select is((public.complete_turn((select (r->>'turn_id')::uuid from res where step = 'rl4'), '525500000002', 'chat_rl', '[]'))->>'answered',
  '1', 'and the fourth turn answers it');

-- fail_turn: count_attempt false gives the attempt back ---------------------------------------------------
insert into res values ('ca_in', public.record_inbound_messages($$[
  {"wamid": "wamid.CA1", "customer_key": "525500000003", "message_type": "text", "body": "Uno", "sent_at": "2026-03-01T10:00:00Z"},
  {"wamid": "wamid.CA2", "customer_key": "525500000003", "message_type": "text", "body": "Dos", "sent_at": "2026-03-01T10:00:01Z"}
]$$));
insert into res values ('ca1', public.claim_turn('525500000003'));
select is(public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'ca1'), 'out of time', true, 0, false),
  '{"released": 2, "failed": 0}'::jsonb, 'a turn put back for lack of time releases its messages');
select results_eq(
  $$select state, attempts, turn_id, failure_reason from public.whatsapp_messages where customer_key = '525500000003' order by wamid$$,
  $$values ('pending', 0, null::uuid, 'out of time'), ('pending', 0, null::uuid, 'out of time')$$,
  'the claim''s attempt is given back');
select is((select sweep_after from public.chat_sessions where customer_key = '525500000003'), now() + interval '1 minute',
  'with no delay, the sweeper may look a minute later');
select is(public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'ca1'), 'again', true, 0, false),
  '{"released": 0, "failed": 0}'::jsonb, 'a repeated call touches nothing');
select is((select sum(attempts)::int from public.whatsapp_messages where customer_key = '525500000003'), 0,
  'and gives back nothing twice');
insert into res values ('ca2', public.claim_turn('525500000003'));
select is((select jsonb_path_query_array(r, '$.messages[*].attempts') from res where step = 'ca2'), '[1, 1]'::jsonb,
  'the next claim counts them as first attempts');
select is((select jsonb_path_query_array(r, '$.messages[*].failed_before') from res where step = 'ca2'), '[true, true]'::jsonb,
  'and says a turn with them failed, so the engine reads the agent''s chat back before sending them again');
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'ca2'), 'Retell answered 502', true, 10, true);
select is((select array_agg(attempts order by wamid) from public.whatsapp_messages where customer_key = '525500000003'),
  array[1, 1], 'a counted retry keeps the attempt');
insert into res values ('ca3', public.claim_turn('525500000003'));
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'ca3'), 'WhatsApp refused the number', false, 0, false);
select results_eq(
  $$select state, attempts from public.whatsapp_messages where customer_key = '525500000003' order by wamid$$,
  $$values ('failed', 1), ('failed', 1)$$,
  'failing for good, the attempt can be given back too');
select is((select sweep_after from public.chat_sessions where customer_key = '525500000003'), null,
  'failing for good sets no sweep_after (claiming had cleared it)');

-- A saved answer put back: its messages wait with the turn, which is resumed.
insert into res values ('sv_in', public.record_inbound_messages($$[
  {"wamid": "wamid.SV1", "customer_key": "525500000004", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('sv1', public.claim_turn('525500000004', 300, 1));
insert into t select 'sv1', (r->>'turn_id')::uuid from res where step = 'sv1';
select public.save_turn_replies((select id from t where name = 'sv1'), 'chat_sv', '["¡Hola!"]');
select is(public.fail_turn((select id from t where name = 'sv1'), 'Graph answered 503', true, 20, false),
  '{"released": 1, "failed": 0}'::jsonb, 'a turn with a saved answer is put back');
select results_eq(
  $$select state, turn_id, attempts from public.whatsapp_messages where wamid = 'wamid.SV1'$$,
  $$select 'pending', id, 0 from t where name = 'sv1'$$,
  'its message waits with its turn, the attempt given back');
select results_eq(
  $$select turn_id, turn_lease_expires_at, turn_replies, sweep_after from public.chat_sessions where customer_key = '525500000004'$$,
  $$select id, now(), '["¡Hola!"]'::jsonb, now() + interval '80 seconds' from t where name = 'sv1'$$,
  'the session keeps the turn and its answer, the lease ended, sweep_after set');
insert into res values ('sv2', public.claim_turn('525500000004', 300, 1));
select is((select (r->>'turn_id')::uuid from res where step = 'sv2'), (select id from t where name = 'sv1'),
  'the next claim resumes the turn');
select is((select r->'messages'->0->>'attempts' from res where step = 'sv2'), '1', 'its message, first attempt again');
select public.fail_turn((select id from t where name = 'sv1'), 'Graph answered 503', true, 20, true);
insert into res values ('sv3', public.claim_turn('525500000004', 300, 1));
select is((select r->>'status' || ' ' || (r->'messages'->0->>'attempts') from res where step = 'sv3'), 'claimed 2',
  'a saved answer put back (counted) past the maximum is still resumed: it was put back, not a crash');

-- The three-argument call still works (defaults), and bad arguments are refused.
insert into res values ('df_in', public.record_inbound_messages($$[
  {"wamid": "wamid.DF1", "customer_key": "525500000005", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('df1', public.claim_turn('525500000005'));
select throws_ok(format($$select public.fail_turn(%L, 'x', true, -1)$$, (select r->>'turn_id' from res where step = 'df1')),
  '22023', null, 'a negative retry delay raises 22023');
select throws_ok(format($$select public.fail_turn(%L, 'x', true, 43201)$$, (select r->>'turn_id' from res where step = 'df1')),
  '22023', null, 'a retry delay over 12 hours raises 22023');
select throws_ok(format($$select public.fail_turn(%L, 'x', true, null)$$, (select r->>'turn_id' from res where step = 'df1')),
  '22023', null, 'a null retry delay raises 22023');
select throws_ok(format($$select public.fail_turn(%L, 'x', true, 0, null)$$, (select r->>'turn_id' from res where step = 'df1')),
  '22023', null, 'a null count_attempt raises 22023');
select is(public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'df1'), 'Retell answered 503', true),
  '{"released": 1, "failed": 0}'::jsonb, 'three arguments: no delay, the attempt counted');
select results_eq(
  $$select m.state, m.attempts, s.sweep_after from public.whatsapp_messages m join public.chat_sessions s using (customer_key)
    where m.wamid = 'wamid.DF1'$$,
  $$values ('pending', 1, now() + interval '1 minute')$$,
  'the defaults: attempt kept, sweep_after a minute on');

-- defer_form_submission -------------------------------------------------------------------------------
insert into res values ('fs1', public.record_form_submission('idem-rel-1', '525500000101', '+525500000101', 'Ana', true));
insert into t select 'fs1', (r->>'submission_id')::uuid from res where step = 'fs1';
select is(public.defer_form_submission((select id from t where name = 'fs1'), 'Retell answered 429', 30), true,
  'a queued submission is deferred');
select results_eq(
  $$select status, failure_reason, sweep_after from public.form_submissions where idempotency_key = 'idem-rel-1'$$,
  $$values ('queued', 'Retell answered 429', now() + interval '90 seconds')$$,
  'it stays queued, with the reason and sweep_after the retry plus a minute');
update public.form_submissions set status = 'started', chat_id = 'chat_fs1' where idempotency_key = 'idem-rel-1';
select is(public.defer_form_submission((select id from t where name = 'fs1'), 'late', 30), false,
  'a submission that is not queued is not deferred');
select is((select failure_reason from public.form_submissions where idempotency_key = 'idem-rel-1'), 'Retell answered 429',
  'and is left as it was');
select is(public.defer_form_submission(gen_random_uuid(), 'x', 1), false, 'an unknown submission: false');
select throws_ok(format($$select public.defer_form_submission(%L, '', 1)$$, (select id from t where name = 'fs1')),
  '22023', null, 'an empty reason raises 22023');
select throws_ok(format($$select public.defer_form_submission(%L, 'x', -1)$$, (select id from t where name = 'fs1')),
  '22023', null, 'a negative delay raises 22023');
select throws_ok(format($$select public.defer_form_submission(%L, 'x', 43201)$$, (select id from t where name = 'fs1')),
  '22023', null, 'a delay over 12 hours raises 22023');

-- sweep_stranded_work: each kind of stranded work ----------------------------------------------------------
-- Start again from nothing, so the sweep sees only what follows.
reset role;
delete from public.chat_sessions;
set local role service_role;
delete from res;
delete from t;

-- A: a message recorded whose job never reached the queue, two minutes ago.
insert into res values ('a', public.record_inbound_messages($$[
  {"wamid": "wamid.SA1", "customer_key": "525500000201", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:01:00Z"}
]$$));
update public.whatsapp_messages set updated_at = now() - interval '2 minutes' where wamid = 'wamid.SA1';
-- B: a message recorded just now: its job is on its way.
insert into res values ('b', public.record_inbound_messages($$[
  {"wamid": "wamid.SB1", "customer_key": "525500000202", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
-- C: a turn whose worker died (and whose fail_turn never came): its lease ran out two minutes ago.
insert into res values ('c', public.record_inbound_messages($$[
  {"wamid": "wamid.SC1", "customer_key": "525500000203", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:02:00Z"}
]$$));
insert into res values ('c_claim', public.claim_turn('525500000203'));
update public.chat_sessions set turn_lease_expires_at = now() - interval '2 minutes' where customer_key = '525500000203';
update public.whatsapp_messages set updated_at = now() - interval '7 minutes' where wamid = 'wamid.SC1';
-- D: a turn whose lease ran out ten seconds ago: within the grace.
insert into res values ('d', public.record_inbound_messages($$[
  {"wamid": "wamid.SD1", "customer_key": "525500000204", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T09:00:00Z"}
]$$));
insert into res values ('d_claim', public.claim_turn('525500000204'));
update public.chat_sessions set turn_lease_expires_at = now() - interval '10 seconds' where customer_key = '525500000204';
update public.whatsapp_messages set updated_at = now() - interval '5 minutes' where wamid = 'wamid.SD1';
-- E: a live turn holds the customer, and a message waits behind it.
insert into res values ('e', public.record_inbound_messages($$[
  {"wamid": "wamid.SE1", "customer_key": "525500000205", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T08:00:00Z"}
]$$));
insert into res values ('e_claim', public.claim_turn('525500000205'));
insert into res values ('e2', public.record_inbound_messages($$[
  {"wamid": "wamid.SE2", "customer_key": "525500000205", "message_type": "text", "body": "¿Hola?", "sent_at": "2026-03-01T08:01:00Z"}
]$$));
update public.whatsapp_messages set updated_at = now() - interval '5 minutes' where customer_key = '525500000205';
-- F: put back by fail_turn with a retry in 30 s: the queue retries it, the sweeper waits.
insert into res values ('f', public.record_inbound_messages($$[
  {"wamid": "wamid.SF1", "customer_key": "525500000206", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T07:00:00Z"}
]$$));
insert into res values ('f_claim', public.claim_turn('525500000206'));
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'f_claim'), 'Retell answered 500', true, 30);
update public.whatsapp_messages set updated_at = now() - interval '5 minutes' where wamid = 'wamid.SF1';
-- G: answered long ago: nothing waits.
insert into res values ('g', public.record_inbound_messages($$[
  {"wamid": "wamid.SG1", "customer_key": "525500000207", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T06:00:00Z"}
]$$));
insert into res values ('g_claim', public.claim_turn('525500000207'));
select public.complete_turn((select (r->>'turn_id')::uuid from res where step = 'g_claim'), '525500000207', 'chat_g', '[]');
update public.whatsapp_messages set updated_at = now() - interval '5 minutes' where wamid = 'wamid.SG1';
-- Submissions: H queued two minutes ago and never started; I queued just now; J deferred; K started.
insert into res values ('h', public.record_form_submission('idem-sweep-h', '525500000301', '+525500000301', 'Hilda', true));
insert into t select 'h', (r->>'submission_id')::uuid from res where step = 'h';
update public.form_submissions set created_at = now() - interval '3 minutes', updated_at = now() - interval '2 minutes'
where idempotency_key = 'idem-sweep-h';
insert into res values ('i', public.record_form_submission('idem-sweep-i', '525500000302', '+525500000302', 'Iris', true));
insert into res values ('j', public.record_form_submission('idem-sweep-j', '525500000303', '+525500000303', 'Julia', true));
select public.defer_form_submission((select (r->>'submission_id')::uuid from res where step = 'j'), 'Retell answered 429', 120);
update public.form_submissions set updated_at = now() - interval '2 minutes' where idempotency_key = 'idem-sweep-j';
insert into res values ('k', public.record_form_submission('idem-sweep-k', '525500000304', '+525500000304', 'Karla', true));
update public.form_submissions set status = 'started', chat_id = 'chat_k', updated_at = now() - interval '2 minutes'
where idempotency_key = 'idem-sweep-k';
-- L: another submission queued and never started, older than H.
insert into res values ('l', public.record_form_submission('idem-sweep-l', '525500000305', '+525500000305', 'Lucía', true));
insert into t select 'l', (r->>'submission_id')::uuid from res where step = 'l';
update public.form_submissions set created_at = now() - interval '4 minutes', updated_at = now() - interval '4 minutes'
where idempotency_key = 'idem-sweep-l';

-- At most p_limit of each, oldest first.
insert into res values ('sw_limit', public.sweep_stranded_work(60, 24, 1));
select is((select r->'turns' from res where step = 'sw_limit'), '["525500000201"]'::jsonb,
  'with a limit of one: the customer whose waiting message is oldest');
select is((select r->'submissions' from res where step = 'sw_limit'),
  jsonb_build_array(jsonb_build_object('submission_id', (select id from t where name = 'l'), 'customer_key', '525500000305')),
  'and the oldest queued submission');
select is((select r->'gave_up' from res where step = 'sw_limit'), '{"messages": 0, "submissions": 0, "staff_messages": 0}'::jsonb,
  'nothing is old enough to give up');

insert into res values ('sw1', public.sweep_stranded_work());
select is((select r->'turns' from res where step = 'sw1'), '["525500000203"]'::jsonb,
  'then the customer whose turn died (the one picked before is not picked again)');
select is((select r->'submissions' from res where step = 'sw1'),
  jsonb_build_array(jsonb_build_object('submission_id', (select id from t where name = 'h'), 'customer_key', '525500000301')),
  'and the submission queued and never started');
select is((select r->'gave_up' from res where step = 'sw1'), '{"messages": 0, "submissions": 0, "staff_messages": 0}'::jsonb,
  'nothing given up');
select results_eq(
  $$select customer_key::text, sweep_after from public.chat_sessions where sweep_after is not null order by customer_key$$,
  $$values ('525500000201', now() + interval '60 seconds'), ('525500000203', now() + interval '60 seconds'),
           ('525500000206', now() + interval '90 seconds')$$,
  'what was picked gets sweep_after = now() + grace; the released one keeps its own');
select results_eq(
  $$select idempotency_key, sweep_after from public.form_submissions where sweep_after is not null order by idempotency_key$$,
  $$values ('idem-sweep-h', now() + interval '60 seconds'), ('idem-sweep-j', now() + interval '180 seconds'),
           ('idem-sweep-l', now() + interval '60 seconds')$$,
  'picked submissions too; the deferred one keeps its own');
select results_eq(
  $$select wamid, state from public.whatsapp_messages where direction = 'inbound' order by wamid$$,
  $$values ('wamid.SA1', 'pending'), ('wamid.SB1', 'pending'), ('wamid.SC1', 'in_progress'), ('wamid.SD1', 'in_progress'),
           ('wamid.SE1', 'in_progress'), ('wamid.SE2', 'pending'), ('wamid.SF1', 'pending'), ('wamid.SG1', 'answered')$$,
  'sweeping changes no message');
select results_eq(
  $$select idempotency_key, status from public.form_submissions order by idempotency_key$$,
  $$values ('idem-sweep-h', 'queued'), ('idem-sweep-i', 'queued'), ('idem-sweep-j', 'queued'), ('idem-sweep-k', 'started'),
           ('idem-sweep-l', 'queued')$$,
  'nor any submission');

-- Right after, nothing again.
select is(public.sweep_stranded_work(),
  '{"turns": [], "submissions": [], "staff_messages": [], "pauses_expired": 0, "gave_up": {"messages": 0, "submissions": 0, "staff_messages": 0}}'::jsonb,
  'a second sweep right after picks nothing');

-- Time passes for the rest: each is picked when its time comes.
update public.chat_sessions set sweep_after = now() - interval '1 second' where customer_key = '525500000206';
update public.chat_sessions set turn_lease_expires_at = now() - interval '61 seconds' where customer_key = '525500000204';
update public.whatsapp_messages set updated_at = now() - interval '61 seconds' where wamid = 'wamid.SB1';
update public.form_submissions set sweep_after = now() - interval '1 second' where idempotency_key = 'idem-sweep-j';
insert into res values ('sw2', public.sweep_stranded_work());
select is((select r->'turns' from res where step = 'sw2'), '["525500000206", "525500000204", "525500000202"]'::jsonb,
  'later: the released customer after its sweep_after, the dead turn after the grace, the unqueued message; oldest first');
select is((select jsonb_path_query_array(r, '$.submissions[*].customer_key') from res where step = 'sw2'), '["525500000303"]'::jsonb,
  'and the deferred submission after its sweep_after');
select is((select count(*)::int from public.whatsapp_messages where customer_key = '525500000205' and state = 'pending'), 1,
  'the customer a live turn holds is never picked');

-- A customer's turn taken, answered or not, is not picked: claiming clears sweep_after.
update public.chat_sessions set sweep_after = now() - interval '1 second' where customer_key = '525500000201';
insert into res values ('a_claim', public.claim_turn('525500000201'));
select is((select sweep_after from public.chat_sessions where customer_key = '525500000201'), null, 'claiming clears sweep_after');
select is((public.sweep_stranded_work())->'turns', '[]'::jsonb, 'and a claimed customer is not picked');

-- The sweep's arguments.
select throws_ok($$select public.sweep_stranded_work(0)$$, '22023', null, 'a grace of 0 raises 22023 (it would pick twice)');
select throws_ok($$select public.sweep_stranded_work(60, 0)$$, '22023', null, 'giving up after 0 hours raises 22023');
select throws_ok($$select public.sweep_stranded_work(60, 24, 0)$$, '22023', null, 'a limit of 0 raises 22023');
select throws_ok($$select public.sweep_stranded_work(null)$$, '22023', null, 'a null grace raises 22023');

-- Giving up what waited too long --------------------------------------------------------------------------------
reset role;
delete from public.chat_sessions;
set local role service_role;
delete from res;
delete from t;
insert into res values ('old', public.record_inbound_messages($$[
  {"wamid": "wamid.OLD1", "customer_key": "525500000401", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"},
  {"wamid": "wamid.OLD2", "customer_key": "525500000401", "message_type": "text", "body": "¿Hay alguien?", "sent_at": "2026-03-01T10:01:00Z"}
]$$));
update public.whatsapp_messages set created_at = now() - interval '25 hours', updated_at = now() - interval '2 hours',
  failure_reason = 'Retell answered 402'
where wamid = 'wamid.OLD1';
update public.whatsapp_messages set updated_at = now() - interval '2 hours' where wamid = 'wamid.OLD2';
-- An old message of a customer a live turn holds is left to that turn.
insert into res values ('live', public.record_inbound_messages($$[
  {"wamid": "wamid.LIVE1", "customer_key": "525500000402", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('live_claim', public.claim_turn('525500000402'));
update public.whatsapp_messages set created_at = now() - interval '30 hours' where wamid = 'wamid.LIVE1';
-- A turn that died on an old message: given up too.
insert into res values ('dead', public.record_inbound_messages($$[
  {"wamid": "wamid.DEAD1", "customer_key": "525500000403", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('dead_claim', public.claim_turn('525500000403'));
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 hour' where customer_key = '525500000403';
update public.whatsapp_messages set created_at = now() - interval '26 hours' where wamid = 'wamid.DEAD1';
insert into res values ('old_form', public.record_form_submission('idem-old-1', '525500000404', '+525500000404', 'Olga', true));
update public.form_submissions set created_at = now() - interval '25 hours', updated_at = now() - interval '25 hours'
where idempotency_key = 'idem-old-1';

select is((public.sweep_stranded_work(60, 48))->'gave_up', '{"messages": 0, "submissions": 0, "staff_messages": 0}'::jsonb,
  'within p_give_up_hours nothing is given up');
update public.chat_sessions set sweep_after = null;
update public.form_submissions set sweep_after = null;
insert into res values ('gu', public.sweep_stranded_work(60, 24));
select is((select r->'gave_up' from res where step = 'gu'), '{"messages": 2, "submissions": 1, "staff_messages": 0}'::jsonb,
  'after 24 hours: two messages and one submission given up');
select results_eq(
  $$select wamid, state, failure_reason, turn_id from public.whatsapp_messages where direction = 'inbound' order by wamid$$,
  $$values ('wamid.DEAD1', 'failed', 'gave up: unanswered after 24 hours', null::uuid),
           ('wamid.LIVE1', 'in_progress', null, (select (r->>'turn_id')::uuid from res where step = 'live_claim')),
           ('wamid.OLD1', 'failed', 'Retell answered 402; gave up: unanswered after 24 hours', null::uuid),
           ('wamid.OLD2', 'pending', null, null::uuid)$$,
  'the old waiting messages are failed with the reason; a newer one and a live turn''s are not');
select results_eq(
  $$select status, failure_reason from public.form_submissions where idempotency_key = 'idem-old-1'$$,
  $$values ('failed', 'not started within 24 hours')$$,
  'the old queued submission is failed with the reason');
select is((select r->'turns' from res where step = 'gu'), '["525500000401"]'::jsonb,
  'the customer whose newer message still waits is queued; the one with nothing left is not');
select is((select r->'submissions' from res where step = 'gu'), '[]'::jsonb, 'a failed submission is not queued');

-- retry_failed ------------------------------------------------------------------------------------------------
-- Failed now: OLD1 and DEAD1 (given up), and a turn failed for good for another customer; a failed
-- submission; an answered message that stays answered.
insert into res values ('rf_in', public.record_inbound_messages($$[
  {"wamid": "wamid.RF1", "customer_key": "525500000405", "message_type": "text", "body": "Hola", "sent_at": "2026-03-02T10:00:00Z"},
  {"wamid": "wamid.RF2", "customer_key": "525500000406", "message_type": "text", "body": "Hola", "sent_at": "2026-03-02T10:00:00Z"}
]$$));
insert into res values ('rf1', public.claim_turn('525500000405'));
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'rf1'), 'Graph 190: token expired', false);
insert into res values ('rf2', public.claim_turn('525500000406'));
select public.complete_turn((select (r->>'turn_id')::uuid from res where step = 'rf2'), '525500000406', 'chat_rf', '[]');
insert into res values ('rf_form', public.record_form_submission('idem-rf-1', '525500000407', '+525500000407', 'Rita', true));
select public.fail_form_submission((select (r->>'submission_id')::uuid from res where step = 'rf_form'), 'Retell 401');

select is(public.retry_failed('525500000405'), '{"messages": 1, "submissions": 0}'::jsonb,
  'one customer''s failed messages are put back');
select results_eq(
  $$select m.state, m.attempts, m.turn_id, m.failure_reason, m.retried_at, s.sweep_after
    from public.whatsapp_messages m join public.chat_sessions s using (customer_key) where m.wamid = 'wamid.RF1'$$,
  $$values ('pending', 0, null::uuid, 'Graph 190: token expired', now(), now())$$,
  'pending, no attempts, no turn, the reason kept as history, and the sweeper may queue it now');
select is((select count(*)::int from public.whatsapp_messages where state = 'failed'), 2, 'the other customers'' stay failed');
update public.whatsapp_messages set sent_at = created_at where wamid in ('wamid.OLD1', 'wamid.DEAD1');
select is(public.retry_failed(null, now() - interval '1 hour'), '{"messages": 0, "submissions": 1}'::jsonb,
  'since a time: only what was sent (received) after it');
select results_eq(
  $$select status, failure_reason, sweep_after, retried_at from public.form_submissions where idempotency_key = 'idem-rf-1'$$,
  $$values ('queued', 'Retell 401', now(), now())$$,
  'the failed submission is queued again, its reason kept');
select is(public.retry_failed(), '{"messages": 2, "submissions": 1}'::jsonb, 'with no arguments: everything failed');
select is((select count(*)::int from public.whatsapp_messages where state = 'failed'), 0, 'nothing is left failed');
select is((select state from public.whatsapp_messages where wamid = 'wamid.RF2'), 'answered', 'answered messages are untouched');
select is(public.retry_failed(), '{"messages": 0, "submissions": 0}'::jsonb, 'a repeat puts back nothing');

insert into res values ('rf_sweep', public.sweep_stranded_work());
select is((select r->'gave_up' from res where step = 'rf_sweep'), '{"messages": 0, "submissions": 0, "staff_messages": 0}'::jsonb,
  'messages put back are not given up again at once, however old');
select is((select jsonb_agg(k order by k) from jsonb_array_elements_text((select r->'turns' from res where step = 'rf_sweep')) k),
  '["525500000401", "525500000403", "525500000405"]'::jsonb,
  'the sweeper queues every customer whose messages were put back, at once');
select is((select jsonb_path_query_array(r, '$.submissions[*].customer_key') from res where step = 'rf_sweep'),
  '["525500000404", "525500000407"]'::jsonb, 'and the submissions put back, oldest first');
insert into res values ('rf3', public.claim_turn('525500000403'));
select is((select r->'messages'->0->>'attempts' from res where step = 'rf3'), '1', 'a message put back starts its attempts again');
select is((select r->'messages'->0->>'failed_before' from res where step = 'rf3'), 'true',
  'and is claimed as one a turn failed with');

reset role;
select * from finish();
rollback;
