-- claim_turn: one turn at a time per customer takes all their waiting messages, in order, under a
-- lease; an expired lease's messages are claimed again, up to a maximum number of attempts of turns
-- that never finished. Messages a turn put back (fail_turn with retry) are claimed whatever their
-- attempts.
begin;
select plan(42);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

-- Nothing to do -----------------------------------------------------------------------------------
select is(public.claim_turn('525500000000'), '{"status": "idle", "messages": []}'::jsonb,
  'a customer without a session is idle');
insert into res values ('form', public.record_form_submission('idem-1', '525512345678', '+525512345678', 'Guadalupe', true));
select is(public.claim_turn('525512345678'), '{"status": "idle", "messages": []}'::jsonb,
  'a customer with a session and no messages is idle');
select is((select turn_id from public.chat_sessions where customer_key = '525512345678'), null,
  'an idle claim starts no turn');

-- Three messages, recorded in an order (by wamid) that is not the order they were sent in.
insert into res values ('in1', public.record_inbound_messages($$[
  {"wamid": "wamid.A", "customer_key": "525512345678", "message_type": "text", "body": "tercero", "sent_at": "2026-03-01T10:03:00Z"},
  {"wamid": "wamid.B", "customer_key": "525512345678", "message_type": "text", "body": "segundo", "sent_at": "2026-03-01T10:02:00Z"},
  {"wamid": "wamid.C", "customer_key": "525512345678", "message_type": "text", "body": "primero", "sent_at": "2026-03-01T10:01:00Z",
   "payload": {"text": {"body": "primero"}}}
]$$));

-- The first claim ------------------------------------------------------------------------------
insert into res values ('t1', public.claim_turn('525512345678'));
select is((select r->>'status' from res where step = 't1'), 'claimed', 'waiting messages are claimed');
select isnt((select r->>'turn_id' from res where step = 't1'), null, 'a claim answers its turn id');
select is(
  (select array_agg(m->>'wamid' order by o) from res, jsonb_array_elements(r->'messages') with ordinality e(m, o) where step = 't1'),
  array['wamid.C', 'wamid.B', 'wamid.A'], 'messages are claimed in the order they were sent');
select is(
  (select array_agg((m->>'attempts')::int order by o) from res, jsonb_array_elements(r->'messages') with ordinality e(m, o) where step = 't1'),
  array[1, 1, 1], 'each claimed message counts one attempt');
select is((select r->'messages'->0 from res where step = 't1'),
  jsonb_build_object('wamid', 'wamid.C', 'message_type', 'text', 'body', 'primero',
    'payload', '{"text": {"body": "primero"}}'::jsonb, 'sent_at', '2026-03-01T10:01:00Z'::timestamptz, 'attempts', 1, 'failed_before', false),
  'a claimed message carries its type, body, payload, time, attempts and whether a turn with it failed');
select is((select (r->>'lease_expires_at')::timestamptz from res where step = 't1'), now() + interval '300 seconds',
  'the default lease is 300 seconds');
select is((select r->'session'->>'turn_id' from res where step = 't1'), (select r->>'turn_id' from res where step = 't1'),
  'the answered session carries the new turn');
select is((select r->'session'->>'name' from res where step = 't1'), 'Guadalupe', 'the answered session is the customer''s');
select results_eq(
  $$select wamid, state, turn_id::text, attempts from public.whatsapp_messages order by wamid$$,
  $$select w, 'in_progress', (select r->>'turn_id' from res where step = 't1'), 1
    from unnest(array['wamid.A', 'wamid.B', 'wamid.C']) w$$,
  'the claimed messages are in_progress under the turn');
select results_eq(
  $$select turn_id::text, turn_lease_expires_at from public.chat_sessions where customer_key = '525512345678'$$,
  $$select r->>'turn_id', now() + interval '300 seconds' from res where step = 't1'$$,
  'the session holds the turn and its lease');

-- Busy while the lease runs ------------------------------------------------------------------------
insert into res values ('busy', public.claim_turn('525512345678'));
select is((select r->>'status' from res where step = 'busy'), 'busy', 'a second claim under an unexpired lease is busy');
select is((select r->>'turn_id' from res where step = 'busy'), (select r->>'turn_id' from res where step = 't1'),
  'a busy answer names the running turn');
select is((select r->'messages' from res where step = 'busy'), '[]'::jsonb, 'a busy answer claims no messages');
insert into res values ('in2', public.record_inbound_messages($$[
  {"wamid": "wamid.D", "customer_key": "525512345678", "message_type": "text", "body": "cuarto", "sent_at": "2026-03-01T10:04:00Z"}
]$$));
select is((public.claim_turn('525512345678'))->>'status', 'busy', 'a new message does not break into a running turn');
select is((select state from public.whatsapp_messages where wamid = 'wamid.D'), 'pending',
  'a message arriving during a turn waits');

-- The lease runs out: the messages are claimed again by a new turn --------------------------------
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525512345678';
insert into res values ('t2', public.claim_turn('525512345678', 60));
select is((select r->>'status' from res where step = 't2'), 'claimed', 'after the lease expires the messages are claimed again');
select isnt((select r->>'turn_id' from res where step = 't2'), (select r->>'turn_id' from res where step = 't1'),
  'the new claim is a new turn');
select is(
  (select array_agg((m->>'wamid') || ':' || (m->>'attempts') order by o)
   from res, jsonb_array_elements(r->'messages') with ordinality e(m, o) where step = 't2'),
  array['wamid.C:2', 'wamid.B:2', 'wamid.A:2', 'wamid.D:1'],
  'the dead turn''s messages (second attempt) and the new one are claimed, in order');
select is((select (r->>'lease_expires_at')::timestamptz from res where step = 't2'), now() + interval '60 seconds',
  'the lease has the requested length');
select is((select count(*)::int from public.whatsapp_messages
           where turn_id = (select (r->>'turn_id')::uuid from res where step = 't1')), 0,
  'no message is left with the dead turn');

-- Answered messages are never claimed again -----------------------------------------------------------
insert into res values ('done2', public.complete_turn((select (r->>'turn_id')::uuid from res where step = 't2'),
  '525512345678', 'chat_1', '[{"wamid": "wamid.OUT1", "message_type": "text", "body": "¡Hola Guadalupe!"}]'));
select is((select r->>'answered' from res where step = 'done2'), '4', 'the second turn answers all four');
select is(public.claim_turn('525512345678'), '{"status": "idle", "messages": []}'::jsonb,
  'with every message answered the customer is idle');
insert into res values ('in3', public.record_inbound_messages($$[
  {"wamid": "wamid.E", "customer_key": "525512345678", "message_type": "text", "body": "gracias", "sent_at": "2026-03-01T10:05:00Z"}
]$$));
insert into res values ('t3', public.claim_turn('525512345678'));
select is((select jsonb_path_query_array(r, '$.messages[*].wamid') from res where step = 't3'), '["wamid.E"]'::jsonb,
  'a later claim takes only the new message');
select is((select count(*)::int from public.whatsapp_messages where state = 'answered' and attempts = 2), 3,
  'answered messages keep their attempts and state');

-- A stale turn with nothing left to claim is cleared -------------------------------------------------
update public.whatsapp_messages set state = 'answered' where wamid = 'wamid.E';
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525512345678';
select is(public.claim_turn('525512345678'), '{"status": "idle", "messages": []}'::jsonb,
  'an expired turn with no waiting messages leaves the customer idle');
select results_eq(
  $$select turn_id, turn_lease_expires_at from public.chat_sessions where customer_key = '525512345678'$$,
  $$values (null::uuid, null::timestamptz)$$,
  'the expired turn is cleared from the session');

-- Maximum attempts ----------------------------------------------------------------------------------
insert into res values ('in4', public.record_inbound_messages($$[
  {"wamid": "wamid.AR1", "customer_key": "541122334455", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T11:00:00Z"}
]$$));
insert into res values ('ar1', public.claim_turn('541122334455', 300, 2));
insert into res values ('ar1f', public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'ar1'), 'Retell timed out', true));
insert into res values ('ar2', public.claim_turn('541122334455', 300, 2));
select is((select r->'messages'->0->>'attempts' from res where step = 'ar2'), '2', 'a retried message is claimed a second time');
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '541122334455';
insert into res values ('ar3', public.claim_turn('541122334455', 300, 2));
select is((select r from res where step = 'ar3'), '{"status": "idle", "messages": []}'::jsonb,
  'a message that reached the maximum attempts is not claimed again');
select results_eq(
  $$select state, failure_reason, attempts, turn_id from public.whatsapp_messages where wamid = 'wamid.AR1'$$,
  $$values ('failed', 'Retell timed out; gave up after 2 attempts: the turn never finished', 2, null::uuid)$$,
  'it is failed, with the earlier reason and why it was given up');
select is((select turn_id from public.chat_sessions where customer_key = '541122334455'), null,
  'the customer is free for new messages');
insert into res values ('in5', public.record_inbound_messages($$[
  {"wamid": "wamid.AR2", "customer_key": "541122334455", "message_type": "text", "body": "¿Hola?", "sent_at": "2026-03-01T11:10:00Z"}
]$$));
select is((select state from public.whatsapp_messages where wamid = 'wamid.AR2'), 'pending',
  'a new message after a failed one waits');
select is((select jsonb_path_query_array(public.claim_turn('541122334455', 300, 2), '$.messages[*].wamid')), '["wamid.AR2"]'::jsonb,
  'a failed message is never claimed again; the new one is');

-- A message at its maximum while pending (put back by fail_turn) is claimed again: only a turn that
-- never finished gives a message up.
insert into res values ('in6', public.record_inbound_messages($$[
  {"wamid": "wamid.CO1", "customer_key": "573001234567", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T12:00:00Z"}
]$$));
insert into res values ('co1', public.claim_turn('573001234567', 300, 1));
insert into res values ('co1f', public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'co1'), 'Retell 500', true));
select is((select state from public.whatsapp_messages where wamid = 'wamid.CO1'), 'pending', 'sanity: the retried message waits');
insert into res values ('co2', public.claim_turn('573001234567', 300, 1));
select is((select r->>'status' || ' ' || (r->'messages'->0->>'attempts') from res where step = 'co2'), 'claimed 2',
  'a pending message at its maximum attempts is claimed again');
select is((select state || ': ' || failure_reason from public.whatsapp_messages where wamid = 'wamid.CO1'),
  'in_progress: Retell 500', 'it is in progress, with the earlier reason');

-- Bad arguments ------------------------------------------------------------------------------------
select throws_ok($$select public.claim_turn('525512345678', 0)$$, '22023', null, 'a lease of 0 seconds raises 22023');
select throws_ok($$select public.claim_turn('525512345678', 43201)$$, '22023', null, 'a lease over 12 hours raises 22023');
select throws_ok($$select public.claim_turn('525512345678', null)$$, '22023', null, 'a null lease raises 22023');
select throws_ok($$select public.claim_turn('525512345678', 300, 0)$$, '22023', null, 'max attempts of 0 raises 22023');

reset role;
select * from finish();
rollback;
