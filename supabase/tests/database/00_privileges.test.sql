-- Backend-only, read from the catalog: every table, view, sequence and function in `public` that
-- no extension owns (so whatever a later migration adds is checked without editing this file).
-- Tables have RLS on and no policy; views run as the caller; `anon`, `authenticated` and PUBLIC
-- hold no privilege on any of them; every function is EXECUTE for service_role only, runs as the
-- caller and pins its search_path. Each check lists the objects that break it, so a failure
-- names them. The number of checks does not depend on the number of objects.
begin;
select plan(12);

-- What is ours: not pgTAP's (created in `public` by `create extension pgtap`) nor any other
-- extension's. Temporary views live in pg_temp, so they are not among what they list.
create temporary view our_relations as
select c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) as name
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public'
  and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e');

create temporary view our_functions as
select p.oid, p.prokind, p.prosecdef, p.proconfig, p.oid::regprocedure::text as name
from pg_proc p
where p.pronamespace = 'public'::regnamespace
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

-- The roles the Data API hands to clients, and PUBLIC (which every role is a member of).
create temporary view api_roles (role) as values ('anon'), ('authenticated'), ('public');

-- Every privilege a table can carry (MAINTAIN exists from PostgreSQL 17).
create temporary view table_privileges (privilege) as
select unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']
              || case when current_setting('server_version_num')::int >= 170000
                      then array['MAINTAIN'] else array[]::text[] end);

-- The enumeration finds what we know is there (else every check below would pass on nothing).
select set_has(
  $$select name from our_relations$$,
  $$values ('public.chat_sessions'), ('public.chat_history'), ('public.whatsapp_messages'),
           ('public.form_submissions'), ('public.unprocessed_webhook_events'),
           ('public.chat_session_overview'), ('public.whatsapp_messages_id_seq'),
           ('public.unprocessed_webhook_events_id_seq'), ('public.conversation_events'), ('public.staff_messages'),
           ('public.bridge_settings'), ('public.conversation_transcript'), ('public.needs_attention'),
           ('public.staff_messages_id_seq'), ('public.conversation_events_id_seq'), ('public.conversation_outcomes')$$,
  'the catalog lists our tables, view and sequences');
select set_has(
  $$select p.proname::text from our_functions f join pg_proc p on p.oid = f.oid$$,
  $$values ('record_inbound_messages'), ('record_form_submission'), ('claim_turn'), ('attach_chat'),
           ('complete_turn'), ('fail_turn'), ('record_delivery_statuses'), ('save_turn_replies'),
           ('record_sent_reply'), ('set_opt_out'), ('complete_form_submission'), ('fail_form_submission'),
           ('record_webhook'), ('skip_form_submission'), ('defer_form_submission'), ('sweep_stranded_work'),
           ('retry_failed'), ('pause_conversation'), ('resume_conversation'), ('record_human_request'),
           ('hold_turn'), ('claim_staff_message'), ('complete_staff_message'), ('refuse_staff_message'),
           ('release_staff_message'), ('record_business_echoes'), ('record_chat_event'), ('outcome_for_hook')$$,
  'the catalog lists our functions');

-- Tables ---------------------------------------------------------------------------------------------
select is_empty(
  $$select name from our_relations r join pg_class c on c.oid = r.oid
    where r.relkind in ('r', 'p') and not c.relrowsecurity$$,
  'every table has row level security enabled');
select is_empty(
  $$select r.name || ': policy ' || pol.polname from our_relations r join pg_policy pol on pol.polrelid = r.oid$$,
  'no table has an RLS policy (backend-only)');
select is_empty(
  $$select r.name from our_relations r join pg_class c on c.oid = r.oid
    where r.relkind = 'v'
      and not exists (select 1 from pg_options_to_table(c.reloptions) o
                      where o.option_name = 'security_invoker'
                        and lower(o.option_value) in ('true', 'on', 'yes', '1', 't', 'y'))$$,
  'every view is security_invoker, so it obeys the tables'' RLS and privileges');

-- Privileges of the API roles ------------------------------------------------------------------------
select is_empty(
  $$select a.role || ' ' || p.privilege || ' on ' || r.name
    from our_relations r cross join api_roles a cross join table_privileges p
    where r.relkind <> 'S' and has_table_privilege(a.role, r.oid, p.privilege)$$,
  'neither anon, authenticated nor PUBLIC holds any privilege on a table or view');
select is_empty(
  $$select a.role || ' ' || p.privilege || ' on a column of ' || r.name
    from our_relations r cross join api_roles a
    cross join (values ('SELECT'), ('INSERT'), ('UPDATE'), ('REFERENCES')) p (privilege)
    where r.relkind <> 'S' and has_any_column_privilege(a.role, r.oid, p.privilege)$$,
  'neither anon, authenticated nor PUBLIC holds any privilege on a column');
select is_empty(
  $$select a.role || ' ' || p.privilege || ' on ' || r.name
    from our_relations r cross join api_roles a
    cross join (values ('USAGE'), ('SELECT'), ('UPDATE')) p (privilege)
    where r.relkind = 'S' and has_sequence_privilege(a.role, r.oid, p.privilege)$$,
  'neither anon, authenticated nor PUBLIC holds any privilege on a sequence');

-- Functions ------------------------------------------------------------------------------------------
select is_empty(
  $$select a.role || ' may execute ' || f.name
    from our_functions f cross join api_roles a
    where has_function_privilege(a.role, f.oid, 'EXECUTE')$$,
  'neither anon, authenticated nor PUBLIC may execute any function');
select is_empty(
  $$select name from our_functions f where not has_function_privilege('service_role', f.oid, 'EXECUTE')$$,
  'service_role may execute every function');
select is_empty(
  $$select name from our_functions where prosecdef$$,
  'no function is security definer: each runs as its caller (service_role)');
select is_empty(
  $$select name from our_functions
    where prokind in ('f', 'p')
      and not exists (select 1 from unnest(proconfig) s where s like 'search_path=%')$$,
  'every function pins its search_path');

select * from finish();
rollback;
