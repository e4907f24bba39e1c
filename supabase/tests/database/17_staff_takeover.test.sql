-- A person takes over and hands back: pause_conversation / resume_conversation with their history,
-- hold_turn keeps a paused customer's messages, claim_turn's context tells the agent what was said
-- meanwhile and complete_turn marks it told, staff_messages (its trigger, claim, complete, refuse,
-- release), the business app's echoes, the sweeper's staff messages and expired pauses, and the
-- two views. Everything backend-only. Time is a transaction's now(): rows are backdated.
begin;
select plan(93);

delete from public.chat_sessions;  -- cascades to the other tables

-- The schema ----------------------------------------------------------------------------------------
select has_table('public', 'conversation_events', 'conversation_events exists');
select has_table('public', 'staff_messages', 'staff_messages exists');
select has_table('public', 'bridge_settings', 'bridge_settings exists');
select has_view('public', 'conversation_transcript', 'conversation_transcript exists');
select has_view('public', 'needs_attention', 'needs_attention exists');
select has_column('public', 'whatsapp_messages', 'author', 'whatsapp_messages.author exists');
select has_column('public', 'whatsapp_messages', 'given_to_agent_at', 'whatsapp_messages.given_to_agent_at exists');
select is((select pause_default_minutes from public.bridge_settings), 60, 'one settings row: pauses last 60 minutes by default');
select is(
  (select count(*)::int from pg_attribute a
   where a.attrelid in ('public.conversation_events'::regclass, 'public.staff_messages'::regclass,
                        'public.bridge_settings'::regclass, 'public.conversation_transcript'::regclass,
                        'public.needs_attention'::regclass)
     and a.attnum > 0 and not a.attisdropped
     and col_description(a.attrelid, a.attnum) is null),
  0, 'every column of the new tables and views is documented');
select is(
  (select count(*)::int from pg_attribute a
   where a.attrelid = 'public.whatsapp_messages'::regclass
     and a.attname in ('author', 'given_to_agent_at', 'context_turn_id')
     and col_description(a.attrelid, a.attnum) is not null),
  3, 'the new columns of whatsapp_messages are documented');
select has_function('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'], 'record_webhook takes echoes');
select hasnt_function('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb'],
  'the four-argument record_webhook is gone (no overload for PostgREST to choose between)');

-- Privileges --------------------------------------------------------------------------------------------
create temporary view takeover_functions (oid) as
values ('public.pause_conversation(text, integer, text, text)'::regprocedure),
       ('public.resume_conversation(text, text)'::regprocedure),
       ('public.record_human_request(text, integer, text, text)'::regprocedure),
       ('public.hold_turn(uuid, text)'::regprocedure),
       ('public.claim_staff_message(bigint, integer)'::regprocedure),
       ('public.complete_staff_message(bigint, jsonb)'::regprocedure),
       ('public.refuse_staff_message(bigint, text, boolean)'::regprocedure),
       ('public.release_staff_message(bigint, text, integer)'::regprocedure),
       ('public.record_business_echoes(jsonb)'::regprocedure),
       ('public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)'::regprocedure);
select is(
  (select count(*)::int from takeover_functions f join pg_proc p on p.oid = f.oid
   where not p.prosecdef and p.proconfig = array['search_path=""']
     and has_function_privilege('service_role', p.oid, 'execute')
     and not has_function_privilege('anon', p.oid, 'execute')
     and not has_function_privilege('authenticated', p.oid, 'execute')
     and obj_description(p.oid, 'pg_proc') is not null),
  10, 'the ten functions run as the caller with an empty search_path, for service_role only, documented');
select is(
  (select count(*)::int from unnest(array['public.conversation_events', 'public.staff_messages', 'public.bridge_settings',
                                          'public.conversation_transcript', 'public.needs_attention']) t,
                             unnest(array['anon', 'authenticated']) r,
                             unnest(array['select', 'insert', 'update', 'delete']) p
   where has_table_privilege(r, t, p)),
  0, 'anon and authenticated may neither read nor write the new tables and views');
select ok(
  (select bool_and(c.relrowsecurity) from pg_class c
   where c.oid in ('public.conversation_events'::regclass, 'public.staff_messages'::regclass, 'public.bridge_settings'::regclass)),
  'RLS is on for the new tables');
set local role anon;
select throws_ok($$select public.pause_conversation('525500001701')$$, '42501', null, 'anon cannot pause');
select throws_ok($$insert into public.staff_messages (customer_key, body) values ('525500001701', 'hola')$$, '42501', null,
  'anon cannot write a staff message');
reset role;
set local role authenticated;
select throws_ok($$select public.resume_conversation('525500001701')$$, '42501', null, 'authenticated cannot resume');
select throws_ok($$select public.claim_staff_message(1)$$, '42501', null, 'authenticated cannot claim a staff message');
select throws_ok($$insert into public.staff_messages (customer_key, body) values ('525500001701', 'hola')$$, '42501', null,
  'authenticated cannot write a staff message');
select throws_ok($$select * from public.needs_attention$$, '42501', null, 'authenticated cannot read needs_attention');
reset role;

set local role service_role;
create temp table res (step text primary key, r jsonb);

-- Authors: by direction, templates the bridge's ------------------------------------------------------
select public.record_inbound_messages($$[
  {"wamid": "wamid.A1", "customer_key": "525500001701", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$);
select public.complete_turn(gen_random_uuid(), '525500001701', 'chat_a', $$[
  {"wamid": "wamid.A2", "message_type": "text", "body": "¡Hola!"},
  {"wamid": "wamid.A3", "message_type": "template", "body": "Plantilla"}]$$);
select results_eq($$select wamid, author from public.whatsapp_messages where customer_key = '525500001701' order by wamid$$,
  $$values ('wamid.A1', 'customer'), ('wamid.A2', 'agent'), ('wamid.A3', 'bridge')$$,
  'a message recorded without an author: the customer''s, the agent''s, the bridge''s template');
select throws_ok($$update public.whatsapp_messages set author = 'staff' where wamid = 'wamid.A1'$$, '23514', null,
  'an inbound message is always the customer''s');

-- pause_conversation / resume_conversation ---------------------------------------------------------------
select is((public.pause_conversation('525500001702', 30, 'calling them', 'ana@example.com'))->>'paused_until',
  to_jsonb(now() + interval '30 minutes') #>> '{}', 'pause for 30 minutes, for a customer never met (a session is made)');
select results_eq($$select kind, by, reason from public.conversation_events where customer_key = '525500001702'$$,
  $$values ('paused', 'ana@example.com', 'calling them')$$, 'the pause is recorded: who and why');
update public.bridge_settings set pause_default_minutes = 15;
select is((select paused_until from public.chat_sessions where customer_key = '525500001702'), now() + interval '30 minutes',
  'paused_until is set');
select public.pause_conversation('525500001702');
select is((select paused_until from public.chat_sessions where customer_key = '525500001702'), now() + interval '15 minutes',
  'no minutes: bridge_settings.pause_default_minutes');
select is((select by from public.conversation_events where customer_key = '525500001702' order by id desc limit 1),
  session_user::text, 'no p_by and no signed-in user: the database user');
update public.bridge_settings set pause_default_minutes = 60;
select throws_ok($$select public.pause_conversation('525500001702', 0)$$, '22023', null, 'a pause of 0 minutes is refused');
select results_eq($$select reason, since, detail from public.needs_attention where customer_key = '525500001702'$$,
  $$values ('paused', now(), format('paused until %s by %s: for 15 minutes', now() + interval '15 minutes', session_user::text) collate "default")$$,
  'needs_attention lists the paused customer with the time left');
select is(public.resume_conversation('525500001702', 'ana@example.com'), '{"resumed": true}'::jsonb, 'resume');
select is((select paused_until from public.chat_sessions where customer_key = '525500001702'), null, 'the pause is over');
select is((select kind || ' ' || by from public.conversation_events where customer_key = '525500001702' order by id desc limit 1),
  'resumed ana@example.com', 'the resume is recorded');
select is(public.resume_conversation('525500001702'), '{"resumed": false}'::jsonb, 'a repeat resumes nothing');
select is(public.resume_conversation('525500009999'), '{"resumed": false}'::jsonb, 'nor for a customer never met');
select is((select count(*)::int from public.needs_attention where customer_key = '525500001702'), 0,
  'needs_attention no longer lists them');

-- record_human_request ---------------------------------------------------------------------------------
select is((public.record_human_request('525500001703', null, 'quiere hablar con alguien'))->>'paused_until',
  to_jsonb(now() + interval '60 minutes') #>> '{}', 'the agent asks for a person: paused for the default');
select results_eq($$select kind, by, reason from public.conversation_events where customer_key = '525500001703' order by id$$,
  $$values ('paused', 'agent', 'a person was asked for: quiere hablar con alguien'),
           ('human_requested', 'agent', 'quiere hablar con alguien')$$,
  'the pause and the request are recorded');
select set_eq($$select reason from public.needs_attention where customer_key = '525500001703'$$,
  $$values ('paused'), ('human_requested')$$, 'needs_attention lists the request and the pause');

-- A staff message answers the request for a person.
insert into public.staff_messages (customer_key, body) values ('525500001703', 'Aquí estoy');
select is((select count(*)::int from public.needs_attention where customer_key = '525500001703' and reason = 'human_requested'),
  0, 'once staff write, the request is answered');

-- hold_turn, then the context after the pause --------------------------------------------------------------
select public.record_inbound_messages($$[
  {"wamid": "wamid.H1", "customer_key": "525500001704", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$);
select public.pause_conversation('525500001704', 60);
insert into res values ('h1', public.claim_turn('525500001704'));
select is((select r->'context' from res where step = 'h1'), '[]'::jsonb, 'nothing untold yet: an empty context');
select is(public.hold_turn((select (r->>'turn_id')::uuid from res where step = 'h1'), '525500001704'),
  '{"completed": true, "held": 1}'::jsonb, 'a paused customer''s turn holds its message');
select results_eq($$select state, given_to_agent_at from public.whatsapp_messages where wamid = 'wamid.H1'$$,
  $$values ('held', null::timestamptz)$$, 'held, not given to the agent');
select is((select turn_id from public.chat_sessions where customer_key = '525500001704'), null, 'the turn lets the customer go');
select is(public.claim_turn('525500001704'), '{"status": "idle", "messages": []}'::jsonb, 'a held message waits for no turn');
select is(public.hold_turn((select (r->>'turn_id')::uuid from res where step = 'h1'), '525500001704'),
  '{"completed": true, "held": 0}'::jsonb, 'a repeat holds nothing more');
-- Staff write; one of their messages fails on WhatsApp.
insert into public.staff_messages (customer_key, body, created_by) values ('525500001704', 'Le llamo en 5 min', 'ana@example.com');
select public.complete_staff_message((select id from public.staff_messages where customer_key = '525500001704'),
  '[{"wamid": "wamid.S1", "message_type": "text", "body": "Le llamo en 5 min"}]');
select public.record_inbound_messages($$[
  {"wamid": "wamid.H2", "customer_key": "525500001704", "message_type": "image", "sent_at": "2026-03-01T10:02:00Z"}
]$$);
insert into res values ('h2', public.claim_turn('525500001704'));
select public.hold_turn((select (r->>'turn_id')::uuid from res where step = 'h2'), '525500001704');
update public.whatsapp_messages set sent_at = '2026-03-01T10:01:00Z' where wamid = 'wamid.S1';
select public.resume_conversation('525500001704');
select public.record_inbound_messages($$[
  {"wamid": "wamid.H3", "customer_key": "525500001704", "message_type": "text", "body": "¿Sigue ahí?", "sent_at": "2026-03-01T10:03:00Z"}
]$$);
insert into res values ('h3', public.claim_turn('525500001704'));
select is((select r->'context' from res where step = 'h3'), $$[
  {"author": "customer", "body": "Hola", "at": "2026-03-01T10:00:00+00:00", "message_type": "text"},
  {"author": "staff", "body": "Le llamo en 5 min", "at": "2026-03-01T10:01:00+00:00", "message_type": "text"},
  {"author": "customer", "body": "(image)", "at": "2026-03-01T10:02:00+00:00", "message_type": "image"}]$$::jsonb,
  'after the pause the turn carries the held messages and the staff''s, in order');
select is((select jsonb_agg(m->>'wamid') from res, jsonb_array_elements(r->'messages') m where step = 'h3'),
  '["wamid.H3"]'::jsonb, 'its messages are only the new one');
-- A completion without the agent (no chat) tells nothing.
select public.fail_turn((select (r->>'turn_id')::uuid from res where step = 'h3'), 'Retell answered 500', true, 0);
insert into res values ('h4', public.claim_turn('525500001704'));
select is(jsonb_array_length((select r->'context' from res where step = 'h4')), 3, 'a failed turn tells nothing: the next carries it again');
select is((public.complete_turn((select (r->>'turn_id')::uuid from res where step = 'h4'), '525500001704', 'chat_h',
  '[{"wamid": "wamid.H.OUT", "message_type": "text", "body": "Aquí sigo"}]'))->>'answered', '1', 'the turn answers');
select results_eq(
  $$select wamid, state, given_to_agent_at is not null from public.whatsapp_messages
    where customer_key = '525500001704' and wamid <> 'wamid.H.OUT' order by wamid$$,
  $$values ('wamid.H1', 'answered', true), ('wamid.H2', 'answered', true), ('wamid.H3', 'answered', true),
           ('wamid.S1', null, true)$$,
  'answered with the agent: the held messages are answered, and all of it told');
select public.record_inbound_messages($$[
  {"wamid": "wamid.H4", "customer_key": "525500001704", "message_type": "text", "body": "Gracias", "sent_at": "2026-03-01T10:04:00Z"}
]$$);
select is((public.claim_turn('525500001704'))->'context', '[]'::jsonb, 'the next turn has nothing untold');

-- Staff messages: the trigger, claim, complete, refuse, release ----------------------------------------------
select public.record_inbound_messages($$[
  {"wamid": "wamid.M1", "customer_key": "525500001705", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$);
insert into public.staff_messages (customer_key, body) values ('525500001705', 'Hola, soy Ana');
select results_eq($$select status, created_by from public.staff_messages where customer_key = '525500001705'$$,
  $$values ('queued', session_user::text collate "default")$$, 'a staff message is queued, by the database user');
select is((select paused_until from public.chat_sessions where customer_key = '525500001705'), now() + interval '60 minutes',
  'and pauses the agent for the default');
select results_eq($$select kind from public.conversation_events where customer_key = '525500001705' order by id$$,
  $$values ('paused'), ('staff_message')$$, 'both recorded');
select public.pause_conversation('525500001705', 600);
insert into public.staff_messages (customer_key, body) values ('525500001705', 'Otra cosa');
select is((select paused_until from public.chat_sessions where customer_key = '525500001705'), now() + interval '600 minutes',
  'a staff message does not shorten a longer pause');
select throws_ok($$insert into public.staff_messages (customer_key, body) values ('525500001705', '')$$, '23514', null,
  'an empty staff message is refused');
select throws_ok($$insert into public.staff_messages (customer_key, body) values ('525500009998', 'hola')$$, '23503', null,
  'a staff message to a customer the bridge does not know is refused');

create temp table ids as select id, body from public.staff_messages where customer_key = '525500001705';
insert into res values ('c1', public.claim_staff_message((select id from ids where body = 'Hola, soy Ana')));
select is((select r->>'status' || ' ' || (r->'message'->>'status') || ' ' || (r->'session'->>'customer_key') from res where step = 'c1'),
  'claimed sending 525500001705', 'claimed: being sent, with the session');
select is((select sweep_after from public.staff_messages where body = 'Hola, soy Ana'), now() + interval '300 seconds',
  'under a lease of five minutes');
select is((public.claim_staff_message((select id from ids where body = 'Hola, soy Ana')))->>'status', 'not_claimed',
  'a second claim (a repeated webhook) takes nothing while it is being sent');
select is(public.complete_staff_message((select id from ids where body = 'Hola, soy Ana'),
  '[{"wamid": "wamid.SM1", "message_type": "text", "body": "Hola, soy Ana"}]'), '{"completed": true}'::jsonb, 'sent');
select results_eq(
  $$select s.status, s.wamid, m.author, m.direction, m.delivery_status, m.given_to_agent_at
    from public.staff_messages s join public.whatsapp_messages m on m.wamid = s.wamid where s.body = 'Hola, soy Ana'$$,
  $$values ('sent', 'wamid.SM1', 'staff', 'outbound', 'accepted', null::timestamptz)$$,
  'recorded as the staff''s outbound message, not yet told to the agent');
select is(public.complete_staff_message((select id from ids where body = 'Hola, soy Ana'),
  '[{"wamid": "wamid.SM1", "message_type": "text"}]'), '{"completed": false}'::jsonb, 'a repeat changes nothing');
select is((public.claim_staff_message((select id from ids where body = 'Hola, soy Ana')))->>'status', 'not_claimed',
  'a sent message is not claimed again');
select is((public.claim_staff_message(-1))->>'status', 'not_claimed', 'nor one that does not exist');
-- A turn holds the customer: busy, the message stays queued.
insert into res values ('busy_turn', public.claim_turn('525500001705'));
select is((public.claim_staff_message((select id from ids where body = 'Otra cosa')))->>'status', 'busy',
  'while a turn holds the customer, a staff message waits');
select is((select status from public.staff_messages where body = 'Otra cosa'), 'queued', 'and stays queued');
select public.hold_turn((select (r->>'turn_id')::uuid from res where step = 'busy_turn'), '525500001705');
select is((public.claim_staff_message((select id from ids where body = 'Otra cosa')))->>'status', 'claimed',
  'once the turn is over, it is claimed');
select is(public.release_staff_message((select id from ids where body = 'Otra cosa'), 'Graph answered 500', 10), true,
  'a send that may pass is released');
select results_eq($$select status, status_reason, sweep_after from public.staff_messages where body = 'Otra cosa'$$,
  $$values ('queued', 'Graph answered 500', now() + interval '70 seconds')$$, 'queued again, for the sweeper a minute after the retry');
select is((public.claim_staff_message((select id from ids where body = 'Otra cosa')))->>'status', 'claimed',
  'the retry claims it');
update public.staff_messages set sweep_after = now() - interval '1 second' where body = 'Otra cosa';
select is((public.claim_staff_message((select id from ids where body = 'Otra cosa')))->>'status', 'claimed',
  'a send whose lease ran out (its worker died) is claimed again');
select is(public.refuse_staff_message((select id from ids where body = 'Otra cosa'), 'outside the 24-hour window'), true, 'refused');
select results_eq($$select status, status_reason from public.staff_messages where body = 'Otra cosa'$$,
  $$values ('refused', 'outside the 24-hour window')$$, 'refused, with the reason');
select is(public.refuse_staff_message((select id from ids where body = 'Otra cosa'), 'again', false), false,
  'a refused message is not refused or failed again');
select throws_ok($$select public.refuse_staff_message(1, ' ')$$, '22023', null, 'a reason is required');

-- The business app's echoes ---------------------------------------------------------------------------------
insert into res values ('e1', public.record_webhook(p_echoes => $$[
  {"wamid": "wamid.E1", "customer_key": "525500001706", "message_type": "text", "body": "Hola desde la app",
   "sent_at": "2026-03-01T11:00:00Z", "wa_id": "5215500001706"},
  {"wamid": "wamid.E2", "customer_key": "525500001706", "message_type": "image", "sent_at": "2026-03-01T11:00:05Z"}]$$));
select is((select r->'echoes' from res where step = 'e1'), $$[
  {"wamid": "wamid.E1", "customer_key": "525500001706", "is_new": true},
  {"wamid": "wamid.E2", "customer_key": "525500001706", "is_new": true}]$$::jsonb, 'two echoes, recorded');
select results_eq(
  $$select m.wamid, m.author, m.delivery_status, s.status, s.body, s.created_by
    from public.whatsapp_messages m join public.staff_messages s on s.wamid = m.wamid
    where m.customer_key = '525500001706' order by m.wamid$$,
  $$values ('wamid.E1', 'staff', 'sent', 'sent', 'Hola desde la app', 'WhatsApp Business app'),
           ('wamid.E2', 'staff', 'sent', 'sent', '(image)', 'WhatsApp Business app')$$,
  'as the staff''s outbound messages and sent staff messages');
select ok((select paused_until > now() from public.chat_sessions where customer_key = '525500001706'),
  'an echo pauses the agent (for a customer the bridge had not met: a session is made)');
select is((public.record_webhook(p_echoes => $$[
  {"wamid": "wamid.E1", "customer_key": "525500001706", "message_type": "text", "body": "Hola desde la app",
   "sent_at": "2026-03-01T11:00:00Z"}]$$))->'echoes',
  '[{"wamid": "wamid.E1", "customer_key": "525500001706", "is_new": false}]'::jsonb, 'a repeated echo is not new');
select is((select count(*)::int from public.staff_messages where customer_key = '525500001706'), 2, 'and recorded once');
select throws_ok($$select public.record_business_echoes('[{"wamid": "wamid.E9", "customer_key": "525500001706"}]')$$,
  '22023', null, 'an echo needs its type and time');

-- The sweeper: staff messages nothing will send, and pauses that ran out -----------------------------------------
delete from public.conversation_events;
insert into public.staff_messages (customer_key, body, created_at) values ('525500001705', 'Olvidado', now() - interval '5 minutes');
insert into public.staff_messages (customer_key, body, created_at) values ('525500001705', 'Reciente', now());
insert into public.staff_messages (customer_key, body, created_at) values ('525500001705', 'Muy viejo', now() - interval '25 hours');
update public.chat_sessions set paused_until = now() - interval '1 minute' where customer_key = '525500001705';
insert into res values ('sw1', public.sweep_stranded_work(60));
select is((select r->'staff_messages' from res where step = 'sw1'),
  jsonb_build_array(jsonb_build_object('id', (select id from public.staff_messages where body = 'Olvidado'),
                                       'customer_key', '525500001705')),
  'a staff message queued past the grace is found; a recent one is not');
select is((select r->'gave_up'->'staff_messages' from res where step = 'sw1'), '1'::jsonb, 'one not sent in a day is given up');
select results_eq($$select status, status_reason from public.staff_messages where body = 'Muy viejo'$$,
  $$values ('failed', 'not sent within 24 hours')$$, 'failed, with the reason');
select is((select r->'pauses_expired' from res where step = 'sw1'), '1'::jsonb, 'a pause that ran out is found');
select results_eq($$select kind, by from public.conversation_events where customer_key = '525500001705' and kind <> 'staff_message'$$,
  $$values ('pause_expired', 'sweeper')$$, 'and recorded');
insert into res values ('sw2', public.sweep_stranded_work(60));
select is((select r->'staff_messages' || jsonb_build_array(r->'pauses_expired') from res where step = 'sw2'), '[0]'::jsonb,
  'a second sweep finds neither again');
update public.staff_messages set status = 'sending', sweep_after = now() - interval '1 second' where body = 'Reciente';
select is(jsonb_array_length((public.sweep_stranded_work(60))->'staff_messages'), 1,
  'a send whose worker died is found');
select is((select status from public.staff_messages where body = 'Reciente'), 'queued', 'back to queued, for its job to claim');

-- The views ---------------------------------------------------------------------------------------------------
select results_eq(
  $$select author, body, delivery_status, state from public.conversation_transcript
    where customer_key = '525500001705' order by at, author, body$$,
  $$select author, body, delivery_status, state from (values
      ('staff', 'Muy viejo', null::text, 'failed: not sent within 24 hours', now() - interval '25 hours'),
      ('customer', 'Hola', null, 'held', '2026-03-01T10:00:00Z'::timestamptz),
      ('staff', 'Olvidado', null, 'queued', now() - interval '5 minutes'),
      ('staff', 'Hola, soy Ana', 'accepted', null, (select sent_at from public.whatsapp_messages where wamid = 'wamid.SM1')),
      ('staff', 'Otra cosa', null, 'refused: outside the 24-hour window', now()),
      ('staff', 'Reciente', null, 'queued', now())) v (author, body, delivery_status, state, at)
    order by at, author, body$$,
  'the transcript: the customer''s, the staff''s sent and not sent, with statuses');
update public.whatsapp_messages set state = 'failed', failure_reason = 'Retell answered 400' where wamid = 'wamid.M1';
update public.chat_sessions set opted_out_at = now() - interval '2 days' where customer_key = '525500001706';
select set_eq($$select customer_key::text, reason from public.needs_attention where customer_key in ('525500001705', '525500001706')$$,
  $$values ('525500001705', 'failed_turn'), ('525500001706', 'opted_out_recently'), ('525500001706', 'paused')$$,
  'needs_attention: failed turns, recent opt-outs, pauses with time left (not one that ran out)');

select * from finish();
rollback;
