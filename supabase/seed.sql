-- Example conversations for local development, loaded by `supabase db reset` after the
-- migrations, so the dashboard (Table Editor, chat_session_overview) has something to show.
-- Everything goes through the RPC functions the bridge calls; the only direct writes mark the
-- form's outreach as started and backdate the bridge's replies (complete_turn stamps them with
-- the clock) so each conversation reads in order. Phone numbers are fictitious.
do $seed$
declare
  v_claim jsonb;
begin
  -- 1. Guadalupe, a Mexican lead from the web form: the agent reached out with a template, she
  --    answered, the agent replied, and she has just written again (waiting for a turn).
  perform public.record_form_submission(
    'seed-form-mx-0001', '525512345678', '+525512345678', 'Guadalupe Hernández', true,
    '{"interes": "Seguro de auto", "ciudad": "Ciudad de México", "vehiculo": "Nissan Versa 2021"}');
  perform public.attach_chat('525512345678', 'chat_seed_mx_0001');
  update public.form_submissions set status = 'started', chat_id = 'chat_seed_mx_0001', updated_at = now()
  where idempotency_key = 'seed-form-mx-0001';
  -- The outreach template is sent outside any turn: complete_turn records it (completed = false).
  perform public.complete_turn(gen_random_uuid(), '525512345678', 'chat_seed_mx_0001', $$[
    {"wamid": "wamid.SEED.MX.OUT.0001", "message_type": "template",
     "body": "¡Hola Guadalupe! Soy Sofía, de Seguros Aurora. Recibimos tu solicitud de cotización para tu auto. ¿Te puedo hacer unas preguntas rápidas?",
     "payload": {"name": "bienvenida_cotizacion", "language": {"code": "es_MX"},
                 "components": [{"type": "body", "parameters": [{"type": "text", "text": "Guadalupe"}]}]}}
  ]$$);
  update public.whatsapp_messages set sent_at = now() - interval '45 minutes' where wamid = 'wamid.SEED.MX.OUT.0001';

  perform public.record_inbound_messages(jsonb_build_array(jsonb_build_object(
    'wamid', 'wamid.SEED.MX.IN.0001', 'customer_key', '525512345678', 'message_type', 'text',
    'body', 'Sí, claro. ¿Qué necesitan saber?', 'sent_at', now() - interval '40 minutes',
    'wa_id', '5215512345678', 'profile_name', 'Lupita',
    'payload', jsonb_build_object('from', '5215512345678', 'id', 'wamid.SEED.MX.IN.0001', 'type', 'text',
                                  'text', jsonb_build_object('body', 'Sí, claro. ¿Qué necesitan saber?')))));
  v_claim := public.claim_turn('525512345678');
  perform public.complete_turn((v_claim->>'turn_id')::uuid, '525512345678', 'chat_seed_mx_0001', $$[
    {"wamid": "wamid.SEED.MX.OUT.0002", "message_type": "text",
     "body": "¡Perfecto! ¿El auto es de uso particular y en qué código postal duerme por las noches?"}
  ]$$);
  update public.whatsapp_messages set sent_at = now() - interval '39 minutes' where wamid = 'wamid.SEED.MX.OUT.0002';
  perform public.record_delivery_statuses(jsonb_build_array(
    jsonb_build_object('wamid', 'wamid.SEED.MX.OUT.0001', 'status', 'read', 'at', now() - interval '41 minutes'),
    jsonb_build_object('wamid', 'wamid.SEED.MX.OUT.0002', 'status', 'delivered', 'at', now() - interval '39 minutes')));

  perform public.record_inbound_messages(jsonb_build_array(jsonb_build_object(
    'wamid', 'wamid.SEED.MX.IN.0002', 'customer_key', '525512345678', 'message_type', 'text',
    'body', 'Particular, CP 03100', 'sent_at', now() - interval '2 minutes',
    'wa_id', '5215512345678', 'profile_name', 'Lupita')));

  -- 2. Nicolás, an Argentine customer who wrote on WhatsApp first (no form); answered and read.
  perform public.record_inbound_messages(jsonb_build_array(jsonb_build_object(
    'wamid', 'wamid.SEED.AR.IN.0001', 'customer_key', '541122334455', 'message_type', 'text',
    'body', 'Hola, ¿hacen seguros de hogar en Buenos Aires?', 'sent_at', now() - interval '3 hours',
    'wa_id', '5491122334455', 'profile_name', 'Nico')));
  perform public.attach_chat('541122334455', 'chat_seed_ar_0001');
  v_claim := public.claim_turn('541122334455');
  perform public.complete_turn((v_claim->>'turn_id')::uuid, '541122334455', 'chat_seed_ar_0001', $$[
    {"wamid": "wamid.SEED.AR.OUT.0001", "message_type": "text",
     "body": "¡Hola Nico! Sí, cubrimos hogar en CABA y GBA. ¿Es casa o departamento?"}
  ]$$);
  update public.whatsapp_messages set sent_at = now() - interval '3 hours' + interval '20 seconds'
  where wamid = 'wamid.SEED.AR.OUT.0001';
  perform public.record_delivery_statuses(jsonb_build_array(
    jsonb_build_object('wamid', 'wamid.SEED.AR.OUT.0001', 'status', 'read', 'at', now() - interval '2 hours 50 minutes')));

  -- 3. Camila, a Colombian lead who just submitted the form: queued, not contacted yet.
  perform public.record_form_submission(
    'seed-form-co-0001', '573001234567', '+573001234567', 'Camila Rojas', true,
    '{"interes": "Seguro de vida", "ciudad": "Medellín"}');
end
$seed$;
