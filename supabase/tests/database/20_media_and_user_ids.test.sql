-- Voice notes and username senders: save_transcript keeps a transcript only under the turn that
-- holds the voice note; record_inbound_messages records each message under the session its sender
-- belongs to, whichever id they write from; record_webhook follows WhatsApp's user id changes and
-- keeps them in the customer's history. Everything backend-only.
begin;
select plan(43);

delete from public.chat_sessions;  -- cascades to the other tables

-- The schema and privileges ---------------------------------------------------------------------------
select has_function('public', 'save_transcript', array['uuid', 'text', 'text'], 'save_transcript exists');
select has_function('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'],
  'record_webhook takes user id changes');
select hasnt_function('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'],
  'the five-argument record_webhook is gone (no overload for PostgREST to choose between)');
select is(
  (select count(*)::int from unnest(array['public.save_transcript(uuid, text, text)'::regprocedure,
                                          'public.customer_for(text, text)'::regprocedure,
                                          'public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)'::regprocedure,
                                          'public.record_inbound_messages(jsonb)'::regprocedure]) f(oid)
   join pg_proc p on p.oid = f.oid
   where not p.prosecdef and p.proconfig = array['search_path=""']
     and has_function_privilege('service_role', p.oid, 'execute')
     and not has_function_privilege('anon', p.oid, 'execute')
     and not has_function_privilege('authenticated', p.oid, 'execute')
     and obj_description(p.oid, 'pg_proc') is not null),
  4, 'the four functions run as the caller with an empty search_path, for service_role only, documented');
select matches(col_description('public.whatsapp_messages'::regclass,
                               (select attnum from pg_attribute where attrelid = 'public.whatsapp_messages'::regclass
                                  and attname = 'body')),
  'voice note''s transcript', 'the body''s comment says it holds a voice note''s transcript');
set local role anon;
select throws_ok($$select public.save_transcript(gen_random_uuid(), 'wamid.X', 'hola')$$, '42501', null,
  'anon cannot save a transcript');
reset role;
set local role authenticated;
select throws_ok($$select public.record_webhook(p_user_id_changes => '[]')$$, '42501', null,
  'authenticated cannot record a webhook');
reset role;

set local role service_role;
create temporary table res (step text primary key, r jsonb) on commit drop;

-- save_transcript ----------------------------------------------------------------------------------------
insert into res values ('voice', public.record_inbound_messages($$[
  {"wamid": "wamid.V1", "customer_key": "525500002001", "message_type": "audio", "sent_at": "2026-03-01T10:00:00Z",
   "payload": {"type": "audio", "audio": {"id": "media-1", "voice": true}}},
  {"wamid": "wamid.V2", "customer_key": "525500002001", "message_type": "text", "body": "¿y el precio?",
   "sent_at": "2026-03-01T10:00:05Z"}
]$$));
select is(public.save_transcript(gen_random_uuid(), 'wamid.V1', 'hola'), false,
  'a pending voice note (no turn holds it) takes no transcript');
insert into res values ('t1', public.claim_turn('525500002001'));
select is(public.save_transcript(gen_random_uuid(), 'wamid.V1', 'hola'), false, 'another turn cannot save it');
select is(public.save_transcript((select (r->>'turn_id')::uuid from res where step = 't1'), 'wamid.V2', 'no'), false,
  'a text message takes no transcript, even under its turn');
select is(public.save_transcript((select (r->>'turn_id')::uuid from res where step = 't1'), 'wamid.V1',
                                 'Hola, quiero saber el precio ' || repeat('x', 20000)), true,
  'the turn that holds the voice note saves its transcript');
select is((select left(body, 29) || '|' || length(body) from public.whatsapp_messages where wamid = 'wamid.V1'),
  'Hola, quiero saber el precio |10000', 'the transcript is the voice note''s body, cut to 10000 characters');
select is((select body from public.whatsapp_messages where wamid = 'wamid.V2'), '¿y el precio?',
  'the text beside it keeps its body');
select is((select m->>'body' from res, jsonb_array_elements(r->'messages') m
           where step = 't1' and m->>'wamid' = 'wamid.V1'), null, '(the claim itself had no body for the note)');
update public.chat_sessions set turn_lease_expires_at = now() - interval '1 second' where customer_key = '525500002001';
insert into res values ('t2', public.claim_turn('525500002001'));
select is((select left(m->>'body', 28) from res, jsonb_array_elements(r->'messages') m
           where step = 't2' and m->>'wamid' = 'wamid.V1'), 'Hola, quiero saber el precio',
  'a retried turn gets the transcript back with its voice note');
select is(public.save_transcript((select (r->>'turn_id')::uuid from res where step = 't1'), 'wamid.V1', 'otra'), false,
  'the turn whose lease expired saves nothing');
select throws_ok($$select public.save_transcript(gen_random_uuid(), 'wamid.V1', null)$$, '22023', null,
  'a null transcript raises 22023');

-- A form customer who writes with both ids, then with the user id only ----------------------------------
select lives_ok($$select public.record_form_submission('form-20-1', '525500002002', '+525500002002', 'Lucía', true)$$,
  'a form customer');
insert into res values ('both', public.record_inbound_messages($$[
  {"wamid": "wamid.F1", "customer_key": "525500002002", "message_type": "text", "body": "hola",
   "sent_at": "2026-03-01T11:00:00Z", "wa_id": "5215500002002", "whatsapp_user_id": "MX.2002"}
]$$));
insert into res values ('user_only', public.record_inbound_messages($$[
  {"wamid": "wamid.F2", "customer_key": "MX.2002", "message_type": "text", "body": "sigo aquí",
   "sent_at": "2026-03-01T11:05:00Z", "whatsapp_user_id": "MX.2002", "profile_name": "lu"}
]$$));
select is((select r->0->>'customer_key' from res where step = 'user_only'), '525500002002',
  'a message from the user id only is answered as the form customer (the returned key is theirs)');
select is((select customer_key::text from public.whatsapp_messages where wamid = 'wamid.F2'), '525500002002',
  'and recorded under their session');
select is((select count(*)::int from public.chat_sessions where customer_key = 'MX.2002'), 0,
  'no second session for the user id');
select is((select name || '|' || whatsapp_user_id || '|' || whatsapp_profile_name || '|' || last_inbound_at::text
           from public.chat_sessions where customer_key = '525500002002'),
  'Lucía|MX.2002|lu|' || '2026-03-01T11:05:00Z'::timestamptz::text, 'the session is the form customer''s, refreshed');
select is(public.record_inbound_messages($$[
  {"wamid": "wamid.F2", "customer_key": "MX.2002", "message_type": "text", "body": "sigo aquí",
   "sent_at": "2026-03-01T11:05:00Z"}]$$),
  '[{"wamid": "wamid.F2", "customer_key": "525500002002", "is_new": false}]'::jsonb,
  'a repeated delivery answers the session its message is under');

-- A username customer who later shares their number --------------------------------------------------------
insert into res values ('username', public.record_inbound_messages($$[
  {"wamid": "wamid.U1", "customer_key": "MX.2003", "message_type": "text", "body": "hola", "sent_at": "2026-03-01T12:00:00Z"}
]$$));
select is((select whatsapp_user_id from public.chat_sessions where customer_key = 'MX.2003'), 'MX.2003',
  'a username sender''s session carries their user id, though the message did not name it');
insert into res values ('shares', public.record_inbound_messages($$[
  {"wamid": "wamid.U2", "customer_key": "525500002003", "message_type": "text", "body": "mi número",
   "sent_at": "2026-03-01T12:01:00Z", "wa_id": "5215500002003", "whatsapp_user_id": "MX.2003"}
]$$));
select is((select r->0->>'customer_key' from res where step = 'shares'), 'MX.2003',
  'their first message with a number is answered in their session');
select is((select count(*)::int from public.chat_sessions where customer_key = '525500002003'), 0,
  'no second session for the number');
select is((select wa_id from public.chat_sessions where customer_key = 'MX.2003'), '5215500002003',
  'the session learns their number');
-- A number that has its own session stays in it.
select lives_ok($$select public.record_inbound_messages('[
  {"wamid": "wamid.O1", "customer_key": "525500002004", "message_type": "text", "body": "a", "sent_at": "2026-03-01T12:00:00Z"},
  {"wamid": "wamid.O0", "customer_key": "MX.2006", "message_type": "text", "body": "z", "sent_at": "2026-03-01T12:00:00Z"}]')$$,
  'a number writes first without a user id, and a username sender');
insert into res values ('own', public.record_inbound_messages($$[
  {"wamid": "wamid.O2", "customer_key": "525500002004", "message_type": "text", "body": "b", "sent_at": "2026-03-01T12:02:00Z",
   "whatsapp_user_id": "MX.2006"}
]$$));
select is((select string_agg(m->>'customer_key', ',') from res, jsonb_array_elements(r) m where step = 'own'),
  '525500002004', 'then with a user id another session carries: a number with a session of its own stays in it');

-- Within one batch: a new user id's messages follow the number that carries it.
insert into res values ('batch', public.record_inbound_messages($$[
  {"wamid": "wamid.B1", "customer_key": "MX.2005", "message_type": "text", "body": "1", "sent_at": "2026-03-01T13:00:00Z"},
  {"wamid": "wamid.B2", "customer_key": "525500002005", "message_type": "text", "body": "2", "sent_at": "2026-03-01T13:00:01Z",
   "wa_id": "5215500002005", "whatsapp_user_id": "MX.2005"}
]$$));
select is((select string_agg(m->>'customer_key', ',' order by m->>'wamid') from res, jsonb_array_elements(r) m
           where step = 'batch'),
  '525500002005,525500002005', 'a batch with a new user id and the number carrying it makes one session');
select is((select count(*)::int from public.chat_sessions where customer_key in ('MX.2005', '525500002005')), 1,
  '(one session)');

-- User id changes -------------------------------------------------------------------------------------------
insert into res values ('change', public.record_webhook(p_user_id_changes => $$[
  {"previous_user_id": "MX.2003", "user_id": "MX.2003b", "at": "2026-03-02T09:00:00Z"},
  {"previous_user_id": "MX.2002", "user_id": "MX.2002b", "wa_id": "5215500009999", "at": "2026-03-02T09:00:00Z"},
  {"previous_user_id": "MX.NOBODY", "user_id": "MX.NOBODY2"}
]$$));
select is((select r->'user_id_changes' from res where step = 'change'),
  $$[{"previous_user_id": "MX.2003", "user_id": "MX.2003b", "customer_keys": ["MX.2003"]},
     {"previous_user_id": "MX.2002", "user_id": "MX.2002b", "customer_keys": ["525500002002"]},
     {"previous_user_id": "MX.NOBODY", "user_id": "MX.NOBODY2", "customer_keys": []}]$$::jsonb,
  'each change names the sessions it changed: by key, by the id carried, none for a stranger');
select results_eq(
  $$select customer_key::text, whatsapp_user_id, wa_id from public.chat_sessions
    where customer_key in ('MX.2003', '525500002002') order by customer_key$$,
  $$values ('525500002002', 'MX.2002b', '5215500009999'), ('MX.2003', 'MX.2003b', '5215500002003')$$,
  'the sessions keep their keys and carry the new ids (and the new number when given)');
select results_eq(
  $$select customer_key::text, kind, at, by, reason from public.conversation_events
    where kind = 'user_id_changed' order by customer_key$$,
  $$values ('525500002002', 'user_id_changed', '2026-03-02T09:00:00Z'::timestamptz, 'WhatsApp', 'from MX.2002 to MX.2002b'),
           ('MX.2003', 'user_id_changed', '2026-03-02T09:00:00Z'::timestamptz, 'WhatsApp', 'from MX.2003 to MX.2003b')$$,
  'each change is kept in the customer''s history');
select is((select count(*)::int from public.chat_sessions where customer_key::text like 'MX.NOBODY%'), 0,
  'a change about someone we never met creates nothing');
select is((public.record_webhook(p_user_id_changes => $$[
  {"previous_user_id": "MX.2003", "user_id": "MX.2003b", "at": "2026-03-02T09:00:00Z"}]$$))->'user_id_changes'->0->'customer_keys',
  '[]'::jsonb, 'a repeated change changes nothing');
select is((select count(*)::int from public.conversation_events where kind = 'user_id_changed'), 2,
  'and adds nothing to the history');

-- The new id writes, in the same delivery as its change: the same session.
insert into res values ('new_id', public.record_webhook(
  p_messages => $$[{"wamid": "wamid.N1", "customer_key": "MX.2003c", "message_type": "text", "body": "soy yo",
                    "sent_at": "2026-03-02T10:00:00Z", "whatsapp_user_id": "MX.2003c"}]$$,
  p_user_id_changes => $$[{"previous_user_id": "MX.2003b", "user_id": "MX.2003c"}]$$));
select is((select r->'messages' from res where step = 'new_id'),
  '[{"wamid": "wamid.N1", "customer_key": "MX.2003", "is_new": true, "waiting": true}]'::jsonb,
  'a message from the new id in the same delivery waits in the same session');
select is((select whatsapp_user_id from public.chat_sessions where customer_key = 'MX.2003'), 'MX.2003c',
  'which carries the newest id');
select is((public.record_webhook(p_messages => $$[
  {"wamid": "wamid.N2", "customer_key": "MX.2002b", "message_type": "text", "body": "hola", "sent_at": "2026-03-02T10:00:00Z"}]$$))
  ->'messages'->0->>'customer_key', '525500002002',
  'the form customer''s new id writes to the form customer''s session');

-- An opt-out by user id reaches the session carrying it.
select is((public.record_webhook(p_opt_outs => $$[{"customer_key": "MX.2002b", "whatsapp_user_id": "MX.2002b"}]$$))
  ->'opt_outs', '[{"customer_key": "525500002002", "changed": true}]'::jsonb,
  'an opt-out by user id opts out the session carrying it');

select throws_ok($$select public.record_webhook(p_user_id_changes => '[{"user_id": "MX.1"}]')$$, '22023', null,
  'a change without its previous id raises 22023');
select throws_ok($$select public.record_webhook(p_user_id_changes => '{}')$$, '22023', null,
  'an object instead of an array raises 22023');

reset role;
select * from finish();
rollback;
