-- Retell's chat webhooks: record_chat_event keeps a chat's end and analysis once each, in any order,
-- marks the session's current chat ended, and leaves unknown chats alone; outcome_for_hook's JSON;
-- conversation_outcomes and chat_session_overview's latest outcome. Everything backend-only.
begin;
select plan(44);

delete from public.chat_sessions;  -- cascades to the other tables

-- The schema ----------------------------------------------------------------------------------------
select has_view('public', 'conversation_outcomes', 'conversation_outcomes exists');
select has_function('public', 'record_chat_event', array['text', 'text', 'timestamp with time zone', 'text', 'jsonb'],
  'record_chat_event exists');
select has_function('public', 'outcome_for_hook', array['text'], 'outcome_for_hook exists');
select is(
  (select count(*)::int from pg_attribute a
   where a.attrelid = 'public.chat_history'::regclass
     and a.attname in ('retell_ended_at', 'disconnection_reason', 'analyzed_at', 'summary', 'user_sentiment',
                       'chat_successful', 'custom_analysis')
     and col_description(a.attrelid, a.attnum) is not null),
  7, 'chat_history''s seven new columns exist, documented');
select is(
  (select count(*)::int from pg_attribute a
   where a.attrelid in ('public.conversation_outcomes'::regclass, 'public.chat_session_overview'::regclass)
     and a.attnum > 0 and not a.attisdropped
     and col_description(a.attrelid, a.attnum) is null),
  0, 'every column of conversation_outcomes and chat_session_overview is documented');
select is(
  (select array_agg(attname::text order by attnum) from pg_attribute
   where attrelid = 'public.chat_session_overview'::regclass and attnum > 0 and not attisdropped),
  array['customer_key', 'customer_name', 'phone_e164', 'current_chat_id', 'chat_status', 'last_message_direction',
        'last_message_body', 'last_message_at', 'inbound_count', 'outbound_count', 'waiting_count', 'failed_count',
        'paused', 'opted_out', 'last_inbound_at', 'last_activity_at', 'last_outcome_chat_id', 'last_outcome_at',
        'last_summary', 'last_user_sentiment', 'last_chat_successful'],
  'chat_session_overview keeps its columns in order, the latest outcome appended');
select ok(
  (select bool_and(lower(o.option_value) = 'true') from pg_class c, pg_options_to_table(c.reloptions) o
   where c.oid in ('public.conversation_outcomes'::regclass, 'public.chat_session_overview'::regclass)
     and o.option_name = 'security_invoker'),
  'both views still run as the caller');

-- Privileges --------------------------------------------------------------------------------------------
select is(
  (select count(*)::int from (values ('public.record_chat_event(text, text, timestamp with time zone, text, jsonb)'::regprocedure),
                                     ('public.outcome_for_hook(text)'::regprocedure)) f (oid)
   join pg_proc p on p.oid = f.oid
   where not p.prosecdef and p.proconfig = array['search_path=""']
     and has_function_privilege('service_role', p.oid, 'execute')
     and not has_function_privilege('anon', p.oid, 'execute')
     and not has_function_privilege('authenticated', p.oid, 'execute')
     and obj_description(p.oid, 'pg_proc') is not null),
  2, 'the two functions run as the caller with an empty search_path, for service_role only, documented');
select is(
  (select count(*)::int from unnest(array['public.conversation_outcomes', 'public.chat_session_overview', 'public.chat_history']) t,
                             unnest(array['anon', 'authenticated']) r,
                             unnest(array['select', 'insert', 'update', 'delete']) p
   where has_table_privilege(r, t, p)),
  0, 'anon and authenticated may neither read nor write the views and chat_history');
select ok(has_table_privilege('service_role', 'public.conversation_outcomes', 'select'), 'service_role reads conversation_outcomes');
set local role anon;
select throws_ok($$select public.record_chat_event('chat_ended', 'chat_x')$$, '42501', null, 'anon cannot record a chat event');
select throws_ok($$select * from public.conversation_outcomes$$, '42501', null, 'anon cannot read conversation_outcomes');
reset role;
set local role authenticated;
select throws_ok($$select public.outcome_for_hook('chat_x')$$, '42501', null, 'authenticated cannot read an outcome');
select throws_ok($$select * from public.chat_session_overview$$, '42501', null, 'authenticated cannot read the overview');
reset role;

set local role service_role;

-- A customer with a form and a chat, another with an older chat replaced -----------------------------------
select public.record_form_submission('k-1801', '525500001801', '+525500001801', 'Ana', true, '{"product": "auto"}');
select public.attach_chat('525500001801', 'chat_1801');
select public.attach_chat('525500001802', 'chat_1802_old');
select public.attach_chat('525500001802', 'chat_1802', 'chat_1802_old', 'silence');

-- Unknown chats change nothing ------------------------------------------------------------------------
select is(public.record_chat_event('chat_ended', 'chat_nobody', now(), 'inactivity'),
  '{"known": false, "customer_key": null, "first_analysis": false}'::jsonb, 'a chat that is not ours: known false');
select is(public.record_chat_event('chat_analyzed', 'chat_nobody', null, null, '{"chat_summary": "x"}'),
  '{"known": false, "customer_key": null, "first_analysis": false}'::jsonb, 'nor its analysis');
select is((select count(*)::int from public.chat_history where chat_id = 'chat_nobody'), 0, 'and no row appears');
select throws_ok($$select public.record_chat_event('call_ended', 'chat_1801')$$, '22023', null, 'an unknown event is refused');
select throws_ok($$select public.record_chat_event('chat_analyzed', 'chat_1801', null, null, '[1]')$$, '22023', null,
  'an analysis that is not an object is refused');

-- chat_started: nothing to record --------------------------------------------------------------------------
select is(public.record_chat_event('chat_started', 'chat_1801'),
  '{"known": true, "customer_key": "525500001801", "first_analysis": false}'::jsonb, 'chat_started: known, nothing stored');
select is((select chat_status from public.chat_sessions where customer_key = '525500001801'), 'ongoing', 'the chat goes on');

-- chat_ended: the end on the row, the session's chat ended ------------------------------------------------
select is(public.record_chat_event('chat_ended', 'chat_1801', '2026-03-01T10:00:00Z', 'inactivity'),
  '{"known": true, "customer_key": "525500001801", "first_analysis": false}'::jsonb, 'chat_ended: known');
select results_eq($$select retell_ended_at, disconnection_reason, ended_at, analyzed_at from public.chat_history where chat_id = 'chat_1801'$$,
  $$values ('2026-03-01T10:00:00Z'::timestamptz, 'inactivity'::text, null::timestamptz, null::timestamptz)$$,
  'the end and its reason are kept; the row stays the current chat (ended_at is for replacements)');
select is((select chat_status from public.chat_sessions where customer_key = '525500001801'), 'ended',
  'the session''s current chat is ended');
select is(public.record_chat_event('chat_ended', 'chat_1801', '2026-03-01T11:00:00Z', 'other'),
  '{"known": true, "customer_key": "525500001801", "first_analysis": false}'::jsonb, 'a repeat is answered the same');
select results_eq($$select retell_ended_at, disconnection_reason from public.chat_history where chat_id = 'chat_1801'$$,
  $$values ('2026-03-01T10:00:00Z'::timestamptz, 'inactivity'::text)$$, 'and changes nothing: the end is kept once');

-- An old chat ending leaves the current one alone.
select is((public.record_chat_event('chat_ended', 'chat_1802_old', null, 'inactivity'))->>'known', 'true', 'an older chat ends');
select results_eq($$select current_chat_id, chat_status from public.chat_sessions where customer_key = '525500001802'$$,
  $$values ('chat_1802'::text, 'ongoing'::text)$$, 'the session''s current chat goes on');
select is((select retell_ended_at from public.chat_history where chat_id = 'chat_1802_old'), now(), 'no end time: now');

-- chat_analyzed: stored once ---------------------------------------------------------------------------------
select is(public.record_chat_event('chat_analyzed', 'chat_1801', '2026-03-01T10:00:00Z', 'inactivity',
  '{"chat_summary": "Ana wants plan B.", "user_sentiment": "Positive", "chat_successful": true,
    "custom_analysis_data": {"plan": "B", "appointment": "2026-03-05"}}'),
  '{"known": true, "customer_key": "525500001801", "first_analysis": true}'::jsonb, 'the first analysis: first_analysis true');
select results_eq($$select analyzed_at, summary, user_sentiment, chat_successful, custom_analysis from public.chat_history where chat_id = 'chat_1801'$$,
  $$values (now(), 'Ana wants plan B.'::text, 'Positive'::text, true, '{"plan": "B", "appointment": "2026-03-05"}'::jsonb)$$,
  'the analysis is on the chat''s row');
select is(public.record_chat_event('chat_analyzed', 'chat_1801', null, null, '{"chat_summary": "changed", "chat_successful": false}'),
  '{"known": true, "customer_key": "525500001801", "first_analysis": false}'::jsonb, 'a repeat: first_analysis false');
select is((select summary || ' ' || chat_successful from public.chat_history where chat_id = 'chat_1801'), 'Ana wants plan B. true',
  'and the analysis is kept once');

-- Analysed before ended: the same state.
select is(public.record_chat_event('chat_analyzed', 'chat_1802', '2026-03-02T09:00:00Z', 'user_hangup',
  '{"chat_summary": "Asked for a call.", "user_sentiment": "Neutral", "chat_successful": false, "custom_analysis_data": null}'),
  '{"known": true, "customer_key": "525500001802", "first_analysis": true}'::jsonb, 'an analysis before its end');
select results_eq($$select retell_ended_at, disconnection_reason, summary, chat_successful, custom_analysis from public.chat_history where chat_id = 'chat_1802'$$,
  $$values ('2026-03-02T09:00:00Z'::timestamptz, 'user_hangup'::text, 'Asked for a call.'::text, false, null::jsonb)$$,
  'it counts the chat ended too');
select is((select chat_status from public.chat_sessions where customer_key = '525500001802'), 'ended', 'the session''s chat is ended');
select is(public.record_chat_event('chat_ended', 'chat_1802', '2026-03-02T09:00:00Z', 'user_hangup'),
  '{"known": true, "customer_key": "525500001802", "first_analysis": false}'::jsonb, 'the late chat_ended');
select results_eq($$select retell_ended_at, disconnection_reason, summary from public.chat_history where chat_id = 'chat_1802'$$,
  $$values ('2026-03-02T09:00:00Z'::timestamptz, 'user_hangup'::text, 'Asked for a call.'::text)$$,
  'changes nothing: the same state as in order');

-- outcome_for_hook ---------------------------------------------------------------------------------------
select is(public.outcome_for_hook('chat_1801'),
  jsonb_build_object('customer_key', '525500001801', 'phone', '+525500001801', 'name', 'Ana', 'chat_id', 'chat_1801',
    'summary', 'Ana wants plan B.', 'user_sentiment', 'Positive', 'chat_successful', true,
    'custom_analysis', '{"plan": "B", "appointment": "2026-03-05"}'::jsonb, 'form_fields', '{"product": "auto"}'::jsonb,
    'analyzed_at', now(), 'started_at', now(), 'ended_at', '2026-03-01T10:00:00Z'::timestamptz,
    'disconnection_reason', 'inactivity'),
  'the hook''s JSON: the customer, the analysis, the form''s fields');
select is(public.outcome_for_hook('chat_1802') - 'analyzed_at' - 'started_at' - 'ended_at',
  jsonb_build_object('customer_key', '525500001802', 'phone', '+525500001802', 'name', null, 'chat_id', 'chat_1802',
    'summary', 'Asked for a call.', 'user_sentiment', 'Neutral', 'chat_successful', false, 'custom_analysis', null,
    'form_fields', '{}'::jsonb, 'disconnection_reason', 'user_hangup'),
  'without a form: the phone from the customer key, no name, no fields');
select is(public.outcome_for_hook('chat_1802_old'), null, 'a chat not analysed: null');
select is(public.outcome_for_hook('chat_nobody'), null, 'a chat not ours: null');

-- The views ------------------------------------------------------------------------------------------------
select results_eq($$select chat_id, ended_at, day, user_sentiment, chat_successful from public.conversation_outcomes
                    where customer_key in ('525500001801', '525500001802') order by chat_id$$,
  $$values ('chat_1801'::text, '2026-03-01T10:00:00Z'::timestamptz, '2026-03-01'::date, 'Positive'::text, true),
           ('chat_1802', '2026-03-02T09:00:00Z', '2026-03-02', 'Neutral', false),
           ('chat_1802_old', now(), (now() at time zone 'UTC')::date, null, null)$$,
  'conversation_outcomes lists every chat with its analysis and day');
select results_eq($$select last_outcome_chat_id, last_summary, last_user_sentiment, last_chat_successful
                    from public.chat_session_overview where customer_key in ('525500001801', '525500001802') order by customer_key$$,
  $$values ('chat_1801'::text, 'Ana wants plan B.'::text, 'Positive'::text, true),
           ('chat_1802', 'Asked for a call.', 'Neutral', false)$$,
  'the overview shows each customer''s latest outcome');

reset role;
select * from finish();
rollback;
