-- fail_turn: give a turn up, keeping the reason: its messages either wait for the next turn
-- (retry) or are failed for good.
begin;
select plan(22);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);
create temp table t (name text primary key, id uuid);

insert into res values ('in1', public.record_inbound_messages($$[
  {"wamid": "wamid.IN1", "customer_key": "525512345678", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"},
  {"wamid": "wamid.IN2", "customer_key": "525512345678", "message_type": "text", "body": "Quiero cotizar", "sent_at": "2026-03-01T10:00:05Z"}
]$$));
insert into res values ('t1', public.claim_turn('525512345678'));
insert into t select 't1', (r->>'turn_id')::uuid from res where step = 't1';

-- Retry ---------------------------------------------------------------------------------------------
select is(public.fail_turn((select id from t where name = 't1'), 'Retell answered 503', true),
  '{"released": 2, "failed": 0}'::jsonb, 'a retried turn releases its messages');
select results_eq(
  $$select wamid, state, failure_reason, turn_id, attempts from public.whatsapp_messages order by wamid$$,
  $$values ('wamid.IN1', 'pending', 'Retell answered 503', null::uuid, 1),
           ('wamid.IN2', 'pending', 'Retell answered 503', null::uuid, 1)$$,
  'released messages wait again, with the reason and their attempts');
select results_eq(
  $$select turn_id, turn_lease_expires_at from public.chat_sessions where customer_key = '525512345678'$$,
  $$values (null::uuid, null::timestamptz)$$,
  'the session is free for the next turn');
select is(public.fail_turn((select id from t where name = 't1'), 'again', true),
  '{"released": 0, "failed": 0}'::jsonb, 'failing a turn again touches nothing');
select is((select failure_reason from public.whatsapp_messages where wamid = 'wamid.IN1'), 'Retell answered 503',
  'the repeated call keeps the first reason');

-- The next turn claims them again; this time give up for good ---------------------------------------
insert into res values ('t2', public.claim_turn('525512345678'));
insert into t select 't2', (r->>'turn_id')::uuid from res where step = 't2';
select is((select jsonb_path_query_array(r, '$.messages[*].attempts') from res where step = 't2'), '[2, 2]'::jsonb,
  'released messages are claimed again by the next turn');
select is(public.fail_turn((select id from t where name = 't2'), 'agent produced no reply', false),
  '{"released": 0, "failed": 2}'::jsonb, 'a turn given up fails its messages');
select results_eq(
  $$select wamid, state, failure_reason, turn_id from public.whatsapp_messages order by wamid$$,
  $$select w, 'failed', 'agent produced no reply', (select id from t where name = 't2') from unnest(array['wamid.IN1', 'wamid.IN2']) w$$,
  'failed messages keep the reason and the turn that failed them');
select is((select turn_id from public.chat_sessions where customer_key = '525512345678'), null, 'the session is freed');
select is(public.claim_turn('525512345678'), '{"status": "idle", "messages": []}'::jsonb, 'failed messages are not claimed again');
select is((select failed_count from public.chat_session_overview where customer_key = '525512345678'), 2::bigint,
  'the overview counts the failed messages');

-- A turn that lost its lease cannot fail the messages of the turn that took over ----------------------
insert into res values ('in2', public.record_inbound_messages($$[
  {"wamid": "wamid.IN3", "customer_key": "525512345678", "message_type": "text", "body": "¿Hola?", "sent_at": "2026-03-01T10:05:00Z"}
]$$));
insert into res values ('t3', public.claim_turn('525512345678'));
insert into t select 't3', (r->>'turn_id')::uuid from res where step = 't3';
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525512345678';
insert into res values ('t4', public.claim_turn('525512345678'));
insert into t select 't4', (r->>'turn_id')::uuid from res where step = 't4';
select is(public.fail_turn((select id from t where name = 't3'), 'timed out', false),
  '{"released": 0, "failed": 0}'::jsonb, 'a turn that lost its lease fails nothing');
select results_eq(
  $$select m.state, m.turn_id, s.turn_id from public.whatsapp_messages m join public.chat_sessions s using (customer_key)
    where m.wamid = 'wamid.IN3'$$,
  $$select 'in_progress', id, id from t where name = 't4'$$,
  'the turn that took over keeps its message and the session');

-- The reason is capped at 2000 characters ------------------------------------------------------------
select is(public.fail_turn((select id from t where name = 't4'), repeat('x', 2500), true),
  '{"released": 1, "failed": 0}'::jsonb, 'a long reason is accepted');
select is((select length(failure_reason) from public.whatsapp_messages where wamid = 'wamid.IN3'), 2000,
  'a long reason is cut to 2000 characters');

-- Bad arguments ---------------------------------------------------------------------------------------
insert into res values ('t5', public.claim_turn('525512345678'));
insert into t select 't5', (r->>'turn_id')::uuid from res where step = 't5';
select throws_ok(format($$select public.fail_turn(%L, '', true)$$, (select id from t where name = 't5')),
  '22023', null, 'an empty reason raises 22023');
select throws_ok(format($$select public.fail_turn(%L, '   ', false)$$, (select id from t where name = 't5')),
  '22023', null, 'a blank reason raises 22023');
select throws_ok(format($$select public.fail_turn(%L, null, true)$$, (select id from t where name = 't5')),
  '22023', null, 'a null reason raises 22023');
select throws_ok(format($$select public.fail_turn(%L, 'reason', null)$$, (select id from t where name = 't5')),
  '22023', null, 'a null retry flag raises 22023');
select results_eq(
  $$select m.state, m.turn_id, s.turn_id from public.whatsapp_messages m join public.chat_sessions s using (customer_key)
    where m.wamid = 'wamid.IN3'$$,
  $$select 'in_progress', id, id from t where name = 't5'$$,
  'a refused call leaves the turn as it was');

-- After a retry, answering clears the reason ----------------------------------------------------------
select is(public.complete_turn((select id from t where name = 't5'), '525512345678', 'chat_1', '[]'),
  '{"completed": true, "answered": 1, "recorded": 0}'::jsonb, 'the retried message is answered');
select is((select state || coalesce(failure_reason, '') from public.whatsapp_messages where wamid = 'wamid.IN3'), 'answered',
  'an answered message has no failure reason');

reset role;
select * from finish();
rollback;
