-- Schema, privileges and constraints: the tables are backend-only (RLS on, no policies, no grants
-- to the API roles), only service_role may call the RPC functions, and the check constraints
-- refuse the states the conversation engine must never reach.
begin;
select plan(62);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

-- Tables, view, domain and functions exist --------------------------------------------------
select has_table('public', 'chat_sessions', 'chat_sessions exists');
select has_table('public', 'chat_history', 'chat_history exists');
select has_table('public', 'whatsapp_messages', 'whatsapp_messages exists');
select has_table('public', 'form_submissions', 'form_submissions exists');
select has_view('public', 'chat_session_overview', 'chat_session_overview exists');
select has_domain('public', 'customer_key', 'customer_key domain exists');

select has_function('public', 'record_inbound_messages', array['jsonb'], 'record_inbound_messages(jsonb) exists');
select has_function('public', 'record_form_submission', array['text', 'text', 'text', 'text', 'boolean', 'jsonb', 'integer', 'integer', 'text', 'integer'],
  'record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer) exists');
select has_function('public', 'claim_turn', array['text', 'integer', 'integer'], 'claim_turn(text, integer, integer) exists');
select has_function('public', 'attach_chat', array['text', 'text', 'text', 'text'], 'attach_chat(text, text, text, text) exists');
select has_function('public', 'complete_turn', array['uuid', 'text', 'text', 'jsonb'], 'complete_turn(uuid, text, text, jsonb) exists');
select has_function('public', 'fail_turn', array['uuid', 'text', 'boolean', 'integer', 'boolean'],
  'fail_turn(uuid, text, boolean, integer, boolean) exists');
select has_function('public', 'record_delivery_statuses', array['jsonb'], 'record_delivery_statuses(jsonb) exists');

-- The functions run as the caller, with an empty search_path.
select is(
  array(select p.proname::text from pg_proc p
        where p.pronamespace = 'public'::regnamespace and p.prosecdef
          and p.proname in ('record_inbound_messages', 'record_form_submission', 'claim_turn', 'attach_chat',
                            'complete_turn', 'fail_turn', 'record_delivery_statuses')),
  array[]::text[],
  'no RPC function is security definer');
select is(
  (select count(*)::int from pg_proc p
   where p.pronamespace = 'public'::regnamespace and p.proconfig @> array['search_path=""']
     and p.proname in ('record_inbound_messages', 'record_form_submission', 'claim_turn', 'attach_chat',
                       'complete_turn', 'fail_turn', 'record_delivery_statuses')),
  7,
  'every RPC function pins an empty search_path');

-- Row level security on every table, and no policy (backend-only) ------------------------------
select ok((select relrowsecurity from pg_class where oid = 'public.chat_sessions'::regclass), 'RLS enabled on chat_sessions');
select ok((select relrowsecurity from pg_class where oid = 'public.chat_history'::regclass), 'RLS enabled on chat_history');
select ok((select relrowsecurity from pg_class where oid = 'public.whatsapp_messages'::regclass), 'RLS enabled on whatsapp_messages');
select ok((select relrowsecurity from pg_class where oid = 'public.form_submissions'::regclass), 'RLS enabled on form_submissions');
select is(
  (select count(*)::int from pg_policy
   where polrelid in ('public.chat_sessions'::regclass, 'public.chat_history'::regclass,
                      'public.whatsapp_messages'::regclass, 'public.form_submissions'::regclass)),
  0,
  'no RLS policy opens any table');
select ok(
  (select reloptions @> array['security_invoker=true'] from pg_class where oid = 'public.chat_session_overview'::regclass),
  'chat_session_overview is security_invoker');

-- Table privileges: none for the API roles -------------------------------------------------
select table_privs_are('public', 'chat_sessions', 'anon', array[]::text[], 'anon has no privilege on chat_sessions');
select table_privs_are('public', 'chat_history', 'anon', array[]::text[], 'anon has no privilege on chat_history');
select table_privs_are('public', 'whatsapp_messages', 'anon', array[]::text[], 'anon has no privilege on whatsapp_messages');
select table_privs_are('public', 'form_submissions', 'anon', array[]::text[], 'anon has no privilege on form_submissions');
select table_privs_are('public', 'chat_session_overview', 'anon', array[]::text[], 'anon has no privilege on chat_session_overview');
select table_privs_are('public', 'chat_sessions', 'authenticated', array[]::text[], 'authenticated has no privilege on chat_sessions');
select table_privs_are('public', 'chat_history', 'authenticated', array[]::text[], 'authenticated has no privilege on chat_history');
select table_privs_are('public', 'whatsapp_messages', 'authenticated', array[]::text[], 'authenticated has no privilege on whatsapp_messages');
select table_privs_are('public', 'form_submissions', 'authenticated', array[]::text[], 'authenticated has no privilege on form_submissions');
select table_privs_are('public', 'chat_session_overview', 'authenticated', array[]::text[], 'authenticated has no privilege on chat_session_overview');
select ok(
  not has_sequence_privilege('anon', 'public.whatsapp_messages_id_seq', 'usage, select, update')
  and not has_sequence_privilege('authenticated', 'public.whatsapp_messages_id_seq', 'usage, select, update'),
  'the API roles cannot use the whatsapp_messages id sequence');
select ok(
  (select bool_and(has_table_privilege('service_role', t, 'select') and has_table_privilege('service_role', t, 'insert')
               and has_table_privilege('service_role', t, 'update') and has_table_privilege('service_role', t, 'delete'))
   from unnest(array['public.chat_sessions', 'public.chat_history', 'public.whatsapp_messages', 'public.form_submissions']) t),
  'service_role may select, insert, update and delete on all four tables');
select ok(has_table_privilege('service_role', 'public.chat_session_overview', 'select'), 'service_role may read chat_session_overview');

-- Function privileges: EXECUTE only for service_role, on every function: 00_privileges.test.sql
-- reads them from the catalog.

-- What the API roles actually get when they try ------------------------------------------------
set local role anon;
select throws_ok($$select * from public.chat_sessions$$, '42501', null, 'anon cannot read chat_sessions');
select throws_ok($$select * from public.chat_session_overview$$, '42501', null, 'anon cannot read chat_session_overview');
select throws_ok($$select public.claim_turn('525512345678')$$, '42501', null, 'anon cannot call claim_turn');
select throws_ok(
  $$select public.record_inbound_messages('[{"wamid":"wamid.ANON","customer_key":"525512345678","message_type":"text","sent_at":"2026-01-01T00:00:00Z"}]')$$,
  '42501', null, 'anon cannot call record_inbound_messages');
reset role;
set local role authenticated;
select throws_ok(
  $$insert into public.chat_sessions (customer_key) values ('525512345678')$$,
  '42501', null, 'authenticated cannot insert into chat_sessions');
select throws_ok(
  $$select public.record_form_submission('k-auth', '525512345678', '+525512345678', 'Ana', true)$$,
  '42501', null, 'authenticated cannot call record_form_submission');
reset role;

-- Constraints (as service_role, which bypasses RLS) ---------------------------------------------
set local role service_role;
select throws_ok($$insert into public.chat_sessions (customer_key) values ('12345')$$,
  '23514', null, 'a customer key of five digits is refused');
select throws_ok($$insert into public.chat_sessions (customer_key) values ('0525512345678')$$,
  '23514', null, 'a customer key with a leading zero is refused');
select throws_ok($$insert into public.chat_sessions (customer_key) values ('+525512345678')$$,
  '23514', null, 'a customer key with a plus sign is refused');
select lives_ok($$insert into public.chat_sessions (customer_key) values ('US.1349aZ')$$,
  'a business-scoped user id is a valid customer key');
select throws_ok($$insert into public.chat_sessions (customer_key, phone_e164) values ('525512340000', '5512340000')$$,
  '23514', null, 'a phone number without + is refused');
select throws_ok($$insert into public.chat_sessions (customer_key, current_chat_id) values ('525512340001', 'chat_x')$$,
  '23514', null, 'a chat id without status and start is refused');
select throws_ok($$insert into public.chat_sessions (customer_key, turn_id) values ('525512340002', gen_random_uuid())$$,
  '23514', null, 'a turn without a lease is refused');
select throws_ok(
  $$insert into public.chat_sessions (customer_key, current_chat_id, chat_status, chat_started_at)
    values ('525512340003', 'chat_x', 'paused', now())$$,
  '23514', null, 'an unknown chat status is refused');

insert into public.chat_sessions (customer_key) values ('525512345678');
insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state)
values ('wamid.ONE', '525512345678', 'inbound', 'text', now(), 'pending');

select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state)
    values ('wamid.ONE', '525512345678', 'inbound', 'text', now(), 'pending')$$,
  '23505', null, 'a wamid is recorded at most once');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state)
    values ('wamid.NOSESSION', '525599999999', 'inbound', 'text', now(), 'pending')$$,
  '23503', null, 'a message needs its customer''s session');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state, delivery_status)
    values ('wamid.IN-DELIVERY', '525512345678', 'inbound', 'text', now(), 'pending', 'sent')$$,
  '23514', null, 'an inbound message cannot have a delivery status');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state, delivery_status)
    values ('wamid.OUT-STATE', '525512345678', 'outbound', 'text', now(), 'pending', 'accepted')$$,
  '23514', null, 'an outbound message cannot have a turn state');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at)
    values ('wamid.OUT-NOSTATUS', '525512345678', 'outbound', 'text', now())$$,
  '23514', null, 'an outbound message needs a delivery status');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at)
    values ('wamid.IN-NOSTATE', '525512345678', 'inbound', 'text', now())$$,
  '23514', null, 'an inbound message needs a turn state');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state)
    values ('wamid.FAILED', '525512345678', 'inbound', 'text', now(), 'failed')$$,
  '23514', null, 'a failed message needs a failure reason');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state)
    values ('wamid.INPROG', '525512345678', 'inbound', 'text', now(), 'in_progress')$$,
  '23514', null, 'an in_progress message needs a turn');
select throws_ok(
  $$insert into public.whatsapp_messages (wamid, customer_key, direction, message_type, sent_at, state)
    values ('wamid.TYPE', '525512345678', 'inbound', 'Text Message', now(), 'pending')$$,
  '23514', null, 'a message type must be a lowercase WhatsApp type');

select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent)
    values ('k-noconsent', '525512345678', '+525512345678', 'Ana', false)$$,
  '23514', null, 'a form submission without consent is refused');
select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, status)
    values ('k-failed', '525512345678', '+525512345678', 'Ana', true, 'failed')$$,
  '23514', null, 'a failed form submission needs a failure reason');
select throws_ok(
  $$insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, fields)
    values ('k-fields', '525512345678', '+525512345678', 'Ana', true, '[1, 2]')$$,
  '23514', null, 'form fields must be a JSON object');

insert into public.chat_history (chat_id, customer_key) values ('chat_current', '525512345678');
select throws_ok(
  $$insert into public.chat_history (chat_id, customer_key) values ('chat_second_current', '525512345678')$$,
  '23505', null, 'a customer has at most one current chat in chat_history');
select throws_ok(
  $$insert into public.chat_history (chat_id, customer_key, started_at, ended_at)
    values ('chat_backwards', '525512345678', now(), now() - interval '1 minute')$$,
  '23514', null, 'a chat cannot end before it started');
reset role;

select * from finish();
rollback;
