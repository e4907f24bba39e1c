-- complete_turn: record what a turn sent (delivery_status 'accepted') and mark the inbound
-- messages it still holds answered; a turn that lost its lease records its replies but answers
-- nothing.
begin;
select plan(33);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

insert into res values ('form', public.record_form_submission('idem-1', '525512345678', '+525512345678', 'Guadalupe', true));
insert into res values ('attach', public.attach_chat('525512345678', 'chat_1'));
insert into res values ('in1', public.record_inbound_messages($$[
  {"wamid": "wamid.IN1", "customer_key": "525512345678", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"},
  {"wamid": "wamid.IN2", "customer_key": "525512345678", "message_type": "text", "body": "¿Cuánto cuesta?", "sent_at": "2026-03-01T10:00:05Z"}
]$$));
insert into res values ('t1', public.claim_turn('525512345678'));
create temp table t (name text primary key, id uuid);
insert into t select 't1', (r->>'turn_id')::uuid from res where step = 't1';

-- Completing a turn -------------------------------------------------------------------------------------
insert into res values ('done1', public.complete_turn((select id from t where name = 't1'), '525512345678', 'chat_1', $$[
  {"wamid": "wamid.OUT1", "message_type": "text", "body": "¡Hola Guadalupe! Con gusto te ayudo."},
  {"wamid": "wamid.OUT2", "message_type": "template", "body": "cotizacion_auto",
   "payload": {"name": "cotizacion_auto", "language": {"code": "es_MX"}}}
]$$));
select is((select r from res where step = 'done1'), '{"completed": true, "answered": 2, "recorded": 2}'::jsonb,
  'a turn that holds its lease completes: two answered, two recorded');
select results_eq(
  $$select wamid, customer_key::text, direction, message_type, body, payload, state, delivery_status, chat_id, turn_id
    from public.whatsapp_messages where direction = 'outbound' order by id$$,
  $$select * from (values
      ('wamid.OUT1', '525512345678', 'outbound', 'text', '¡Hola Guadalupe! Con gusto te ayudo.', null::jsonb, null::text, 'accepted', 'chat_1',
       (select id from t where name = 't1')),
      ('wamid.OUT2', '525512345678', 'outbound', 'template', 'cotizacion_auto',
       '{"name": "cotizacion_auto", "language": {"code": "es_MX"}}'::jsonb, null, 'accepted', 'chat_1', (select id from t where name = 't1'))) v$$,
  'the replies are recorded outbound, accepted, with chat and turn, in the order sent');
select ok((select bool_and(sent_at >= now()) from public.whatsapp_messages where direction = 'outbound')
          and (select sent_at from public.whatsapp_messages where wamid = 'wamid.OUT1')
           <= (select sent_at from public.whatsapp_messages where wamid = 'wamid.OUT2'),
  'the replies are timestamped when recorded, in order');
select results_eq(
  $$select wamid, state, chat_id, failure_reason, turn_id from public.whatsapp_messages where direction = 'inbound' order by wamid$$,
  $$select w, 'answered', 'chat_1', null::text, (select id from t where name = 't1') from unnest(array['wamid.IN1', 'wamid.IN2']) w$$,
  'the inbound messages are answered by chat_1');
select results_eq(
  $$select turn_id, turn_lease_expires_at, last_outbound_at from public.chat_sessions where customer_key = '525512345678'$$,
  $$values (null::uuid, null::timestamptz, now())$$,
  'the session''s turn is cleared and last_outbound_at set');
select results_eq(
  $$select outbound_count, waiting_count, last_message_direction from public.chat_session_overview where customer_key = '525512345678'$$,
  $$values (2::bigint, 0::bigint, 'outbound')$$,
  'the overview shows the replies and nothing waiting');

-- A repeated call (the response was lost) is harmless ------------------------------------------------
insert into res values ('again', public.complete_turn((select id from t where name = 't1'), '525512345678', 'chat_1', $$[
  {"wamid": "wamid.OUT1", "message_type": "text", "body": "¡Hola Guadalupe! Con gusto te ayudo."},
  {"wamid": "wamid.OUT2", "message_type": "template", "body": "cotizacion_auto"}
]$$));
select is((select (r->>'recorded')::int from res where step = 'again'), 0, 'a repeated call records nothing');
select is((select (r->>'answered')::int from res where step = 'again'), 0, 'a repeated call answers nothing again');
select is((select count(*)::int from public.whatsapp_messages), 4, 'a repeated call stores no message');
select is((select payload from public.whatsapp_messages where wamid = 'wamid.OUT2'),
  '{"name": "cotizacion_auto", "language": {"code": "es_MX"}}'::jsonb, 'a repeated call does not overwrite a recorded reply');
select is((select r->>'completed' from res where step = 'again'), 'true', 'a repeated call still answers completed = true');

-- A turn that lost its lease ---------------------------------------------------------------------------
insert into res values ('in2', public.record_inbound_messages($$[
  {"wamid": "wamid.IN3", "customer_key": "525512345678", "message_type": "text", "body": "¿Sigues ahí?", "sent_at": "2026-03-01T10:10:00Z"}
]$$));
insert into res values ('t2', public.claim_turn('525512345678'));
insert into t select 't2', (r->>'turn_id')::uuid from res where step = 't2';
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second', last_outbound_at = now() - interval '10 minutes'
where customer_key = '525512345678';
insert into res values ('t3', public.claim_turn('525512345678'));
insert into t select 't3', (r->>'turn_id')::uuid from res where step = 't3';
select is((select r->>'status' from res where step = 't3'), 'claimed', 'sanity: a new turn took over the expired one');

insert into res values ('late', public.complete_turn((select id from t where name = 't2'), '525512345678', 'chat_1',
  '[{"wamid": "wamid.OUT3", "message_type": "text", "body": "Sí, aquí estoy"}]'));
select is((select r from res where step = 'late'), '{"completed": false, "answered": 0, "recorded": 1}'::jsonb,
  'a turn that lost its lease is told so, and its reply is recorded');
select results_eq(
  $$select direction, delivery_status, turn_id from public.whatsapp_messages where wamid = 'wamid.OUT3'$$,
  $$select 'outbound', 'accepted', id from t where name = 't2'$$,
  'the late turn''s reply is recorded under its turn');
select results_eq(
  $$select state, turn_id from public.whatsapp_messages where wamid = 'wamid.IN3'$$,
  $$select 'in_progress', id from t where name = 't3'$$,
  'the message stays with the turn that took over');
select is((select turn_id from public.chat_sessions where customer_key = '525512345678'), (select id from t where name = 't3'),
  'the session still belongs to the new turn');
select is((select last_outbound_at from public.chat_sessions where customer_key = '525512345678'), now(),
  'a late reply still moves last_outbound_at');

insert into res values ('done3', public.complete_turn((select id from t where name = 't3'), '525512345678', 'chat_1',
  '[{"wamid": "wamid.OUT4", "message_type": "text", "body": "¿En qué más te ayudo?"}]'));
select is((select r from res where step = 'done3'), '{"completed": true, "answered": 1, "recorded": 1}'::jsonb,
  'the turn that took over completes');
select is((select state from public.whatsapp_messages where wamid = 'wamid.IN3'), 'answered', 'and answers the message');

-- A lease that expired with nobody taking over: the turn still holds its messages -----------------------
insert into res values ('in3', public.record_inbound_messages($$[
  {"wamid": "wamid.IN4", "customer_key": "525512345678", "message_type": "text", "body": "Ok", "sent_at": "2026-03-01T10:20:00Z"}
]$$));
insert into res values ('t4', public.claim_turn('525512345678'));
insert into t select 't4', (r->>'turn_id')::uuid from res where step = 't4';
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525512345678';
select is(public.complete_turn((select id from t where name = 't4'), '525512345678', 'chat_1', '[]'),
  '{"completed": true, "answered": 1, "recorded": 0}'::jsonb,
  'a turn whose lease expired but was not taken over still completes');
select is((select turn_id from public.chat_sessions where customer_key = '525512345678'), null, 'and frees the session');

-- No replies: null and [] are the same ---------------------------------------------------------------
insert into res values ('in4', public.record_inbound_messages($$[
  {"wamid": "wamid.IN5", "customer_key": "525512345678", "message_type": "reaction", "sent_at": "2026-03-01T10:30:00Z"}
]$$));
insert into res values ('t5', public.claim_turn('525512345678'));
insert into t select 't5', (r->>'turn_id')::uuid from res where step = 't5';
update public.chat_sessions set last_outbound_at = now() - interval '5 minutes' where customer_key = '525512345678';
select is(public.complete_turn((select id from t where name = 't5'), '525512345678', 'chat_1', null),
  '{"completed": true, "answered": 1, "recorded": 0}'::jsonb, 'a turn with no replies (null) completes');
select is((select last_outbound_at from public.chat_sessions where customer_key = '525512345678'), now() - interval '5 minutes',
  'a turn with no replies does not move last_outbound_at');

-- Failures leave everything as it was --------------------------------------------------------------------
insert into res values ('in5', public.record_inbound_messages($$[
  {"wamid": "wamid.IN6", "customer_key": "525512345678", "message_type": "text", "body": "¿Y el precio?", "sent_at": "2026-03-01T10:40:00Z"}
]$$));
insert into res values ('t6', public.claim_turn('525512345678'));
insert into t select 't6', (r->>'turn_id')::uuid from res where step = 't6';
select throws_ok(
  format($$select public.complete_turn(%L, '525599999999', 'chat_1', '[]')$$, (select id from t where name = 't6')),
  'P0002', null, 'an unknown customer raises P0002');
select throws_ok(
  format($$select public.complete_turn(%L, '525512345678', 'chat_1', '{"wamid": "wamid.OUT9", "message_type": "text"}')$$,
         (select id from t where name = 't6')),
  '22023', null, 'replies that are not an array raise 22023');
select throws_ok(
  format($$select public.complete_turn(%L, '525512345678', 'chat_1', '"hola"')$$, (select id from t where name = 't6')),
  '22023', null, 'a JSON string raises 22023');
select throws_ok(
  format($$select public.complete_turn(%L, '525512345678', 'chat_1',
           '[{"wamid": "wamid.OUT10", "message_type": "text", "body": "ok"}, {"wamid": "wamid.OUT11", "body": "sin tipo"}]')$$,
         (select id from t where name = 't6')),
  '23502', null, 'a reply without a message type raises 23502');
select throws_ok(
  format($$select public.complete_turn(%L, '525512345678', 'chat_1', '[{"message_type": "text", "body": "sin id"}]')$$,
         (select id from t where name = 't6')),
  '23502', null, 'a reply without a wamid raises 23502');
select is((select count(*)::int from public.whatsapp_messages where wamid in ('wamid.OUT9', 'wamid.OUT10', 'wamid.OUT11')), 0,
  'no reply of a refused call is recorded');
select results_eq(
  $$select m.state, m.turn_id, s.turn_id from public.whatsapp_messages m join public.chat_sessions s using (customer_key)
    where m.wamid = 'wamid.IN6'$$,
  $$select 'in_progress', id, id from t where name = 't6'$$,
  'a refused call leaves the turn and its message as they were');

-- A reply whose wamid is already recorded is not counted twice ----------------------------------------
select is(public.complete_turn((select id from t where name = 't6'), '525512345678', 'chat_1',
  '[{"wamid": "wamid.OUT4", "message_type": "text", "body": "dup"}, {"wamid": "wamid.OUT12", "message_type": "text", "body": "Son $1,200 MXN al mes."}]'),
  '{"completed": true, "answered": 1, "recorded": 1}'::jsonb, 'only replies not recorded before are counted');
select is((select body from public.whatsapp_messages where wamid = 'wamid.OUT4'), '¿En qué más te ayudo?',
  'an already recorded reply is not overwritten');

-- A turn id nobody holds: replies recorded, nothing answered -------------------------------------------
select is(public.complete_turn(gen_random_uuid(), '525512345678', 'chat_1', '[]'),
  '{"completed": false, "answered": 0, "recorded": 0}'::jsonb, 'an unknown turn completes nothing');

reset role;
select * from finish();
rollback;
