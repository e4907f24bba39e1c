-- Resuming a turn: the agent's answer is saved (save_turn_replies) before it is sent, each reply is
-- recorded as it goes out (record_sent_reply), and a turn whose worker died after the agent answered
-- is resumed by claim_turn with the same turn id, its own messages and what is left to send.
begin;
select plan(55);

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
select is((select r ? 'resume' from res where step = 't1'), false, 'sanity: a first claim has no resume key');

-- Saving the agent's answer ---------------------------------------------------------------------------
select is(public.save_turn_replies((select id from t where name = 't1'), 'chat_1', '["¡Hola!", "¿Para qué auto?"]'), true,
  'a turn that holds its customer saves its replies');
select results_eq(
  $$select turn_id, turn_chat_id, turn_replies, turn_replies_sent from public.chat_sessions where customer_key = '525512345678'$$,
  $$select id, 'chat_1', '["¡Hola!", "¿Para qué auto?"]'::jsonb, 0 from t where name = 't1'$$,
  'the session keeps the replies, the chat that gave them and none sent');
select is(public.save_turn_replies(gen_random_uuid(), 'chat_1', '["otro"]'), false,
  'a turn that does not hold the customer saves nothing (false)');
select is((select turn_replies from public.chat_sessions where customer_key = '525512345678'), '["¡Hola!", "¿Para qué auto?"]'::jsonb,
  'the refused save left the running turn''s replies alone');

-- Recording a sent reply --------------------------------------------------------------------------------
select is(public.record_sent_reply((select id from t where name = 't1'),
    '{"wamid": "wamid.OUT1", "message_type": "text", "body": "¡Hola!"}'),
  '{"recorded": true, "replies_sent": 1}'::jsonb, 'a sent reply is recorded and counted');
select results_eq(
  $$select wamid, customer_key::text, direction, message_type, body, state, delivery_status, chat_id, turn_id
    from public.whatsapp_messages where direction = 'outbound'$$,
  $$select 'wamid.OUT1', '525512345678', 'outbound', 'text', '¡Hola!', null::text, 'accepted', 'chat_1', id from t where name = 't1'$$,
  'the reply is an outbound message, accepted, with the turn''s chat and the turn');
select results_eq(
  $$select turn_replies_sent, last_outbound_at from public.chat_sessions where customer_key = '525512345678'$$,
  $$values (1, now())$$,
  'the session counts one reply sent and when');
select is(public.record_sent_reply((select id from t where name = 't1'),
    '[{"wamid": "wamid.OUT1", "message_type": "text", "body": "¡Hola!"}]'),
  '{"recorded": false, "replies_sent": 1}'::jsonb, 'the same reply again (same wamid) is not recorded or counted again');
select is((select count(*)::int from public.whatsapp_messages where direction = 'outbound'), 1,
  'the repeat stored no second message');
select is((select turn_replies_sent from public.chat_sessions where customer_key = '525512345678'), 1,
  'the repeat left the count at one');
select throws_ok(format($$select public.record_sent_reply(%L, '{"wamid": "wamid.OUTX", "message_type": "text", "body": "x"}')$$,
    gen_random_uuid()),
  'P0002', null, 'recording a reply for an unknown turn raises P0002');
select is((select count(*)::int from public.whatsapp_messages where wamid = 'wamid.OUTX'), 0,
  'the refused reply was not stored');

-- The worker dies; a message arrives; the lease runs out: the turn is resumed -------------------------
insert into res values ('in2', public.record_inbound_messages($$[
  {"wamid": "wamid.IN3", "customer_key": "525512345678", "message_type": "text", "body": "¿Sigues ahí?", "sent_at": "2026-03-01T10:06:00Z"}
]$$));
select is((public.claim_turn('525512345678'))->>'status', 'busy', 'under its lease the saved turn is busy');
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525512345678';
insert into res values ('r1', public.claim_turn('525512345678', 60));
select is((select r->>'status' from res where step = 'r1'), 'claimed', 'the expired saved turn is claimed');
select is((select (r->>'turn_id')::uuid from res where step = 'r1'), (select id from t where name = 't1'),
  'it is resumed with the same turn id');
select is((select jsonb_path_query_array(r, '$.messages[*].wamid') from res where step = 'r1'), '["wamid.IN1", "wamid.IN2"]'::jsonb,
  'the resumed turn takes only its own messages, in order');
select is((select jsonb_path_query_array(r, '$.messages[*].attempts') from res where step = 'r1'), '[2, 2]'::jsonb,
  'the resumed messages count a second attempt');
select is((select r->'resume' from res where step = 'r1'),
  '{"chat_id": "chat_1", "replies": ["¡Hola!", "¿Para qué auto?"], "replies_sent": 1}'::jsonb,
  'resume carries the chat, the replies and how many were sent');
select is((select (r->>'lease_expires_at')::timestamptz from res where step = 'r1'), now() + interval '60 seconds',
  'the resumed turn has a new lease');
select results_eq(
  $$select state, turn_id, attempts from public.whatsapp_messages where wamid = 'wamid.IN3'$$,
  $$values ('pending', null::uuid, 0)$$,
  'the message that arrived meanwhile is left pending');
select results_eq(
  $$select turn_id, turn_lease_expires_at, turn_chat_id, turn_replies_sent from public.chat_sessions where customer_key = '525512345678'$$,
  $$select id, now() + interval '60 seconds', 'chat_1', 1 from t where name = 't1'$$,
  'the session holds the resumed turn with its saved answer');

-- The rest is sent and the resumed turn completes --------------------------------------------------------
select is(public.record_sent_reply((select id from t where name = 't1'), $$[
    {"wamid": "wamid.OUT2a", "message_type": "text", "body": "¿Para qué"},
    {"wamid": "wamid.OUT2b", "message_type": "text", "body": "auto?"}]$$),
  '{"recorded": true, "replies_sent": 2}'::jsonb, 'a reply sent in two parts counts once');
select is((select count(*)::int from public.whatsapp_messages where direction = 'outbound' and chat_id = 'chat_1'), 3,
  'both parts are recorded with the turn''s chat');
select is(public.complete_turn((select id from t where name = 't1'), '525512345678', 'chat_1', '[]'),
  '{"completed": true, "answered": 2, "recorded": 0}'::jsonb, 'the resumed turn completes and answers its two messages');
select results_eq(
  $$select turn_id, turn_lease_expires_at, turn_chat_id, turn_replies, turn_replies_sent
    from public.chat_sessions where customer_key = '525512345678'$$,
  $$values (null::uuid, null::timestamptz, null::text, null::jsonb, 0)$$,
  'completing clears the turn, its chat, its replies and the count');
select results_eq(
  $$select wamid, state, chat_id from public.whatsapp_messages where direction = 'inbound' order by wamid$$,
  $$values ('wamid.IN1', 'answered', 'chat_1'), ('wamid.IN2', 'answered', 'chat_1'), ('wamid.IN3', 'pending', null)$$,
  'the resumed turn''s messages are answered; the later one still waits');
select is(public.save_turn_replies((select id from t where name = 't1'), 'chat_1', '["tarde"]'), false,
  'a completed turn can no longer save replies');

-- The waiting message is claimed next, by a new turn -------------------------------------------------------
insert into res values ('t2', public.claim_turn('525512345678'));
insert into t select 't2', (r->>'turn_id')::uuid from res where step = 't2';
select isnt((select id from t where name = 't2'), (select id from t where name = 't1'), 'the next claim is a new turn');
select is((select jsonb_path_query_array(r, '$.messages[*].wamid') from res where step = 't2'), '["wamid.IN3"]'::jsonb,
  'it takes the message that waited');
select is((select r ? 'resume' from res where step = 't2'), false, 'a new turn has no resume key');

-- fail_turn with retry keeps a saved answer: the turn is ended and resumed ---------------------------------
select is(public.save_turn_replies((select id from t where name = 't2'), 'chat_2', '["Sí, aquí estoy."]'), true,
  'the new turn saves its answer');
select is(public.fail_turn((select id from t where name = 't2'), 'WhatsApp answered 503', true),
  '{"released": 1, "failed": 0}'::jsonb, 'a retried turn with a saved answer releases its message');
select results_eq(
  $$select turn_id, turn_lease_expires_at, turn_chat_id, turn_replies from public.chat_sessions where customer_key = '525512345678'$$,
  $$select id, now(), 'chat_2', '["Sí, aquí estoy."]'::jsonb from t where name = 't2'$$,
  'the session keeps the turn and its answer, with the lease ended');
select results_eq(
  $$select state, turn_id, failure_reason from public.whatsapp_messages where wamid = 'wamid.IN3'$$,
  $$select 'pending', id, 'WhatsApp answered 503' from t where name = 't2'$$,
  'its message waits again, with the turn and the reason');
insert into res values ('r2', public.claim_turn('525512345678'));
select is((select (r->>'turn_id')::uuid from res where step = 'r2'), (select id from t where name = 't2'),
  'the next claim resumes that turn');
select is((select r->'resume' from res where step = 'r2'),
  '{"chat_id": "chat_2", "replies": ["Sí, aquí estoy."], "replies_sent": 0}'::jsonb, 'with nothing sent yet');

-- fail_turn for good clears the saved answer ------------------------------------------------------------
select is(public.fail_turn((select id from t where name = 't2'), 'WhatsApp refused the number', false),
  '{"released": 0, "failed": 1}'::jsonb, 'a turn given up fails its message');
select results_eq(
  $$select turn_id, turn_lease_expires_at, turn_chat_id, turn_replies, turn_replies_sent
    from public.chat_sessions where customer_key = '525512345678'$$,
  $$values (null::uuid, null::timestamptz, null::text, null::jsonb, 0)$$,
  'failing clears the turn, its chat, its replies and the count');
select is(public.claim_turn('525512345678'), '{"status": "idle", "messages": []}'::jsonb,
  'after it nothing is left to resume');

-- A resumed turn whose messages were all given up falls through to the waiting ones ------------------
insert into res values ('ar_in1', public.record_inbound_messages($$[
  {"wamid": "wamid.AR1", "customer_key": "541122334455", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T11:00:00Z"}
]$$));
insert into res values ('ar1', public.claim_turn('541122334455', 300, 2));
insert into t select 'ar1', (r->>'turn_id')::uuid from res where step = 'ar1';
select is(public.save_turn_replies((select id from t where name = 'ar1'), 'chat_ar', '["¡Hola Nico!"]'), true,
  'sanity: the Argentine turn saves its answer');
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '541122334455';
insert into res values ('ar2', public.claim_turn('541122334455', 300, 2));
select is((select (r->>'turn_id')::uuid || ' ' || (r->'messages'->0->>'attempts') from res where step = 'ar2'),
  (select id from t where name = 'ar1') || ' 2', 'sanity: it is resumed once, at its second attempt');
insert into res values ('ar_in2', public.record_inbound_messages($$[
  {"wamid": "wamid.AR2", "customer_key": "541122334455", "message_type": "text", "body": "¿Hola?", "sent_at": "2026-03-01T11:10:00Z"}
]$$));
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '541122334455';
insert into res values ('ar3', public.claim_turn('541122334455', 300, 2));
select is((select r->>'status' from res where step = 'ar3'), 'claimed', 'the waiting message is claimed');
select isnt((select (r->>'turn_id')::uuid from res where step = 'ar3'), (select id from t where name = 'ar1'),
  'by a new turn, not the given-up one');
select is((select jsonb_path_query_array(r, '$.messages[*].wamid') from res where step = 'ar3'), '["wamid.AR2"]'::jsonb,
  'it takes only the waiting message');
select is((select r ? 'resume' from res where step = 'ar3'), false, 'and resumes nothing');
select results_eq(
  $$select state, failure_reason, turn_id from public.whatsapp_messages where wamid = 'wamid.AR1'$$,
  $$values ('failed', 'gave up after 2 attempts: the turn never finished', null::uuid)$$,
  'the resumed turn''s message is given up');
select results_eq(
  $$select turn_id::text, turn_chat_id, turn_replies, turn_replies_sent from public.chat_sessions where customer_key = '541122334455'$$,
  $$select r->>'turn_id', null::text, null::jsonb, 0 from res where step = 'ar3'$$,
  'the session holds the new turn without the old answer');

-- Constraints ---------------------------------------------------------------------------------------------
select throws_ok($$update public.chat_sessions set turn_replies = '["x"]', turn_chat_id = 'chat_1'
                   where customer_key = '525512345678'$$,
  '23514', null, 'replies without a turn raise 23514');
select throws_ok($$update public.chat_sessions set turn_replies = '["x"]' where customer_key = '541122334455'$$,
  '23514', null, 'replies without the chat that gave them raise 23514');
select is(public.save_turn_replies((select (r->>'turn_id')::uuid from res where step = 'ar3'), 'chat_ar', '["uno"]'), true,
  'sanity: one reply saved');
select throws_ok($$update public.chat_sessions set turn_replies_sent = 2 where customer_key = '541122334455'$$,
  '23514', null, 'more replies sent than saved raises 23514');
select throws_ok($$update public.chat_sessions set turn_replies = '{"0": "uno"}' where customer_key = '541122334455'$$,
  '23514', null, 'replies that are not an array raise 23514');

-- Bad arguments -----------------------------------------------------------------------------------------
select throws_ok(format($$select public.save_turn_replies(%L, 'chat_ar', '{"text": "uno"}')$$,
    (select r->>'turn_id' from res where step = 'ar3')),
  '22023', null, 'save_turn_replies with an object raises 22023');
select throws_ok(format($$select public.save_turn_replies(%L, 'chat_ar', null)$$,
    (select r->>'turn_id' from res where step = 'ar3')),
  '22023', null, 'save_turn_replies with null raises 22023');

reset role;
select * from finish();
rollback;
