-- record_webhook also records the customers who told WhatsApp to stop our marketing messages
-- (Meta's `user_preferences` webhook, value `stop`): they are opted out exactly as by an opt-out
-- word (set_opt_out), in the same transaction as the rest of the delivery. A customer the bridge
-- has not met yet gets a session, so the opt-out holds when they or a form turn up later.
-- A `resume` is not passed here: opting back in stays with the customer's own words.
--
-- The argument list changes, so the three-argument function is dropped: two overloads would
-- leave PostgREST unable to choose between them for a call that names only the first three.

drop function public.record_webhook(jsonb, jsonb, jsonb);

-- record_webhook: everything one webhook delivery carries, in one transaction: inbound messages
-- (once per wamid), delivery statuses, opt-outs, and what could not be used (kept for inspection).
-- p_opt_outs: [{customer_key, wa_id?, whatsapp_user_id?, at?}].
-- Returns {messages: [{wamid, customer_key, is_new, waiting}], statuses: [...],
-- opt_outs: [{customer_key, changed}]}. `waiting` says a message still waits for a turn, so a
-- delivery repeated after a failed enqueue queues it again; `changed` is false for a customer
-- who already was opted out (a repeated delivery changes nothing).
create function public.record_webhook(
  p_messages jsonb default '[]'::jsonb,
  p_statuses jsonb default '[]'::jsonb,
  p_unprocessed jsonb default '[]'::jsonb,
  p_opt_outs jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_messages jsonb := '[]'::jsonb;
  v_statuses jsonb := '[]'::jsonb;
  v_opt_outs jsonb := '[]'::jsonb;
  v_customer_key text;
begin
  if jsonb_typeof(p_unprocessed) is distinct from 'array' then
    raise exception 'p_unprocessed must be a JSON array' using errcode = '22023';
  end if;
  if p_opt_outs is not null and jsonb_typeof(p_opt_outs) <> 'array' then
    raise exception 'p_opt_outs must be a JSON array' using errcode = '22023';
  end if;
  if jsonb_array_length(coalesce(p_messages, '[]'::jsonb)) > 0 then
    v_messages := public.record_inbound_messages(p_messages);
    -- A statement of its own, so that its snapshot sees the rows just recorded.
    select coalesce(jsonb_agg(m.recorded || jsonb_build_object('waiting', exists (
             select 1 from public.whatsapp_messages w where w.wamid = m.recorded->>'wamid' and w.state = 'pending'))
           order by m.ord), '[]'::jsonb)
    into v_messages
    from jsonb_array_elements(v_messages) with ordinality as m(recorded, ord);
  end if;
  if jsonb_array_length(coalesce(p_statuses, '[]'::jsonb)) > 0 then
    v_statuses := public.record_delivery_statuses(p_statuses);
  end if;
  if jsonb_array_length(coalesce(p_opt_outs, '[]'::jsonb)) > 0 then
    if exists (select 1 from jsonb_to_recordset(p_opt_outs) as o(customer_key text) where o.customer_key is null) then
      raise exception 'each opt-out needs a customer_key' using errcode = '22023';
    end if;
    -- A customer the bridge has not met yet: a session to hold the opt-out (in a fixed lock
    -- order, so concurrent deliveries cannot deadlock).
    insert into public.chat_sessions (customer_key, wa_id, whatsapp_user_id)
    select distinct on (o.customer_key) o.customer_key, o.wa_id, o.whatsapp_user_id
    from jsonb_to_recordset(p_opt_outs) as o(customer_key text, wa_id text, whatsapp_user_id text)
    order by o.customer_key
    on conflict (customer_key) do nothing;
    -- Then the same opt-out as an opt-out word, once per customer, in the same order.
    for v_customer_key in
      select distinct o.customer_key from jsonb_to_recordset(p_opt_outs) as o(customer_key text) order by 1
    loop
      v_opt_outs := v_opt_outs || jsonb_build_object(
        'customer_key', v_customer_key,
        'changed', (public.set_opt_out(v_customer_key, true)->>'changed')::boolean);
    end loop;
  end if;
  -- The reason quotes what Meta sent (a number id, a status, …): cut to what the column holds, so
  -- that no signed payload can make the delivery fail for ever.
  insert into public.unprocessed_webhook_events (reason, payload)
  select left(coalesce(nullif(e->>'reason', ''), 'unknown'), 2000), coalesce(e->'payload', 'null'::jsonb)
  from jsonb_array_elements(p_unprocessed) as e;
  return jsonb_build_object('messages', v_messages, 'statuses', v_statuses, 'opt_outs', v_opt_outs);
end;
$$;

-- Backend-only, as every other step: the API roles may not call it; service_role may.
revoke execute on function public.record_webhook(jsonb, jsonb, jsonb, jsonb) from public, anon, authenticated;
grant execute on function public.record_webhook(jsonb, jsonb, jsonb, jsonb) to service_role;

comment on function public.record_webhook(jsonb, jsonb, jsonb, jsonb) is
  'Record one webhook delivery: messages, statuses, opt-outs (marketing stopped in WhatsApp), and what could not be used.';

notify pgrst, 'reload schema';
