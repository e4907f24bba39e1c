//! The end of a chaos run: waiting for the bridge to settle, then reading the database and the
//! stand-ins' records and counting what went wrong.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sandbox::LocalStack;
use sandbox::graph_standin::AcceptedMessage;
use sandbox::retell_standin::{RetellRequest, StandInChat};
use sandbox::{RetellOperation, RetellStandIn};

use super::faults::Kill;
use super::{ChaosReport, Customer, MAX_RECEIVES, OutageKind, Volume, World, chat_customer, lock};

/// How long the database must have nothing waiting, with jobs still queued, before the run
/// stops waiting for those jobs (retries of work already done).
const QUIET_ENOUGH: Duration = Duration::from_secs(10);

/// Every request Retell's stand-in received.
pub(super) fn retell_requests(retell: &RetellStandIn) -> Vec<RetellRequest> {
    [
        RetellOperation::CreateChat,
        RetellOperation::CreateChatCompletion,
        RetellOperation::GetChat,
        RetellOperation::EndChat,
    ]
    .into_iter()
    .flat_map(|op| retell.requests(op))
    .collect()
}

/// Waits until nothing of `keys` waits in the database (no message pending or in progress, no
/// form queued) and the queue is empty, or nothing has waited for a while, or `deadline`.
pub(super) async fn settle(
    world: &World,
    stack: &LocalStack,
    keys: &[&str],
    deadline: Instant,
) -> Result<()> {
    let db = stack.database().await?;
    let mut quiet_since = None;
    loop {
        let waiting: i64 = db
            .query_one(
                "select (select count(*) from public.whatsapp_messages \
                         where direction = 'inbound' and state in ('pending', 'in_progress') \
                           and customer_key::text = any($1)) \
                      + (select count(*) from public.form_submissions \
                         where status = 'queued' and customer_key::text = any($1))",
                &[&keys],
            )
            .await
            .context("counting what still waits")?
            .get(0);
        let unfinished = world.queue.inner().unfinished();
        let now = Instant::now();
        if waiting > 0 {
            quiet_since = None;
        } else if unfinished == 0 || now - *quiet_since.get_or_insert(now) >= QUIET_ENOUGH {
            return Ok(());
        }
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the run left behind: the database's rows and the stand-ins' records.
struct Records {
    /// Inbound messages by wamid: (state, failure reason).
    stored: HashMap<String, (String, String)>,
    /// Outbound messages by wamid: (customer key, type, whether a turn sent it).
    outbound: HashMap<String, (String, String, bool)>,
    /// Form submissions: (customer key, status, outcome reason).
    submissions: Vec<(String, String, String)>,
    chats: Vec<StandInChat>,
    retell: Vec<RetellRequest>,
    accepted: Vec<AcceptedMessage>,
    first_attempts: HashMap<String, Instant>,
    delivered: HashMap<String, Instant>,
    not_taken: HashSet<String>,
    chats_ended: HashMap<String, usize>,
    kills: Vec<Kill>,
    /// Store outages: (start, end).
    store_down: Vec<(Instant, Instant)>,
}

impl Records {
    async fn read(world: &World, stack: &LocalStack, keys: &[&str]) -> Result<Records> {
        let db = stack.database().await?;
        let inbound = db
            .query(
                "select wamid, state, coalesce(failure_reason, '') from public.whatsapp_messages \
                 where direction = 'inbound' and customer_key::text = any($1)",
                &[&keys],
            )
            .await
            .context("reading the inbound messages")?;
        let outbound = db
            .query(
                "select wamid, customer_key::text, message_type, turn_id is not null \
                 from public.whatsapp_messages \
                 where direction = 'outbound' and customer_key::text = any($1)",
                &[&keys],
            )
            .await
            .context("reading the outbound messages")?;
        let submissions = db
            .query(
                "select customer_key::text, status, coalesce(outcome_reason, failure_reason, '') \
                 from public.form_submissions where customer_key::text = any($1)",
                &[&keys],
            )
            .await
            .context("reading the form submissions")?;
        Ok(Records {
            stored: inbound
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2))))
                .collect(),
            outbound: outbound
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
                .collect(),
            submissions: submissions
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect(),
            chats: world.retell.chats(),
            retell: retell_requests(&world.retell),
            accepted: world.graph.accepted(),
            first_attempts: lock(&world.first_attempts).clone(),
            delivered: lock(&world.delivered).clone(),
            not_taken: lock(&world.not_taken).clone(),
            chats_ended: lock(&world.chats_ended).clone(),
            kills: world.queue.inner().handler().kills(),
            store_down: lock(&world.window_times)
                .iter()
                .filter(|(kind, _, _)| *kind == OutageKind::Store)
                .map(|(_, start, end)| (*start, *end))
                .collect(),
        })
    }

    fn chats_of<'r>(&'r self, customer: &'r Customer) -> impl Iterator<Item = &'r StandInChat> {
        self.chats
            .iter()
            .filter(|chat| chat_customer(chat) == Some(customer.key.as_str()))
    }

    /// What Graph took for `customer`, in order.
    fn sent_to<'r>(&'r self, customer: &Customer) -> impl Iterator<Item = &'r AcceptedMessage> {
        let to = customer.recipient();
        self.accepted.iter().filter(move |m| m.to == to)
    }

    /// The customer's messages by number, with the wamid, as the run wrote them.
    fn written(&self, customer: &Customer) -> Vec<(usize, String)> {
        let prefix = format!("wamid.chaos.{}.", customer.key);
        let mut written: Vec<(usize, String)> = self
            .first_attempts
            .keys()
            .filter_map(|w| Some((w.strip_prefix(&prefix)?.parse().ok()?, w.clone())))
            .collect();
        written.sort();
        written
    }
}

pub(super) async fn check(
    world: &World,
    stack: &LocalStack,
    customers: &[Customer],
) -> Result<ChaosReport> {
    let keys: Vec<&str> = customers.iter().map(|c| c.key.as_str()).collect();
    let records = Records::read(world, stack, &keys).await?;
    let mut report = ChaosReport {
        sweeper: lock(&world.sweeper).clone(),
        ..ChaosReport::default()
    };
    let queue = world.queue.inner();
    report.violations.dead_letters = queue.dead_letters().len();
    for (job, reason) in queue.dead_letters().iter().take(3) {
        report.example(format!("dead letter: {job:?}: {reason}"));
    }
    if queue.unfinished() > 0 {
        report.jobs_still_queued = queue.unfinished();
    }

    // When each customer's message and form was answered, for the outages' catch-up times.
    let mut answered_at: Vec<(Instant, Option<Instant>)> = Vec::new();
    let mut waits = Vec::new();
    let mut messages = 0;
    let mut replies = 0;
    for customer in customers {
        let customer_replies: Vec<&AcceptedMessage> = records
            .sent_to(customer)
            .filter(|m| m.message_type == "text")
            .collect();
        replies += customer_replies.len();
        messages += check_messages(
            &mut report,
            &records,
            customer,
            &customer_replies,
            &mut waits,
            &mut answered_at,
        );
        check_reply_order(&mut report, &records, customer, &customer_replies);
        check_chats(&mut report, &records, customer);
        check_sends(&mut report, world, &records, customer);
        check_forms(&mut report, world, &records, customer, &mut answered_at);
    }
    if let Some((wait, message, acknowledged)) = waits.iter().max_by_key(|(wait, ..)| *wait) {
        let customer = message.split(' ').next().unwrap_or_default();
        let at = |t: Instant| {
            format!(
                "+{:.1} s",
                t.saturating_duration_since(world.started).as_secs_f64()
            )
        };
        let receives: Vec<String> = queue
            .handler()
            .receives_of(customer)
            .into_iter()
            .filter(|record| record.started >= *acknowledged)
            .map(|record| {
                format!(
                    "{} receive {}: {}",
                    at(record.started),
                    record.receive,
                    record.outcome
                )
            })
            .collect();
        report.slowest = Some(format!(
            "{message} waited {:.1} s from the webhook's 200 at {}; the customer's jobs since: {}",
            wait.as_secs_f64(),
            at(*acknowledged),
            receives.join("; ")
        ));
    }
    report.latency = super::Latency::of(waits.into_iter().map(|(wait, ..)| wait).collect());
    report.kill_moments = kill_moments(&records);
    report.turn_lengths = queue.handler().turn_lengths();
    report.retries = queue.handler().retries();
    report.receives = queue.handler().receive_counts();
    report.faults_ended = lock(&world.faults_ended).map(|at| at - world.started);
    report.windows = lock(&world.windows).clone();
    report.windows.sort_by_key(|w| w.from);
    for window in &mut report.windows {
        let end = world.started + window.to;
        let before_end = answered_at.iter().filter(|(written, _)| *written < end);
        window.caught_up_after = before_end
            .map(|(_, answered)| answered.map(|at| at.saturating_duration_since(end)))
            .try_fold(Duration::ZERO, |latest, after| Some(latest.max(after?)));
    }

    let graph_requests = world.graph.request_count();
    report.volume = Volume {
        customers: customers.len(),
        messages,
        deliveries: world.deliveries.load(Ordering::Relaxed),
        duplicate_deliveries: world.duplicate_deliveries.load(Ordering::Relaxed),
        late_deliveries: world.late_deliveries.load(Ordering::Relaxed),
        forms: lock(&world.forms).len(),
        form_posts: world.form_posts.load(Ordering::Relaxed),
        jobs_run: queue.stats().receives,
        workers_killed: records.kills.len(),
        kills_too_late: queue.handler().kills_too_late(),
        chats_ended_by_retell: records.chats_ended.values().sum(),
        retell_requests: records.retell.len(),
        // Status 0: the client gave up waiting.
        retell_failures: records
            .retell
            .iter()
            .filter(|r| !matches!(r.status, 200 | 201 | 204))
            .count(),
        graph_requests,
        graph_failures: graph_requests
            .saturating_sub(records.accepted.len() + world.graph.read_receipts().len()),
        graph_slow_answers: records
            .accepted
            .iter()
            .filter(|m| m.answer_delay.is_some())
            .count(),
        replies,
        seconds: world.started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// Each message the webhook acknowledged: stored, answered by exactly one reply, given to the
/// agent once; a failed one only when a fault made that right. Returns how many were written.
fn check_messages(
    report: &mut ChaosReport,
    records: &Records,
    customer: &Customer,
    replies: &[&AcceptedMessage],
    waits: &mut Vec<(Duration, String, Instant)>,
    answered_at: &mut Vec<(Instant, Option<Instant>)>,
) -> usize {
    // Each text the agent was given, with the chat it went to (to tell a retry from a restart).
    let user_turns: Vec<(String, &str)> = records
        .chats_of(customer)
        .flat_map(|chat| {
            let chat_id = chat.chat_id.as_str();
            chat.contents("user").into_iter().map(move |t| (t, chat_id))
        })
        .collect();
    let kills = records
        .kills
        .iter()
        .filter(|kill| kill.customer == customer.key)
        .count();
    let written = records.written(customer);
    for (n, wamid) in &written {
        let token = customer.token(*n);
        let Some(acknowledged) = records.delivered.get(wamid).copied() else {
            if records.not_taken.contains(wamid) {
                report.violations.not_taken += 1;
                report.example(format!(
                    "{token}: the webhook never answered 200 to its deliveries"
                ));
            }
            continue;
        };
        let first_reply = replies
            .iter()
            .filter(|r| r.text.contains(&token))
            .map(|r| r.accepted_at)
            .min();
        answered_at.push((records.first_attempts[wamid], first_reply));
        if let Some(reply) = first_reply {
            waits.push((
                reply.saturating_duration_since(acknowledged),
                format!("{} {token}", customer.key),
                acknowledged,
            ));
        }
        let Some((state, reason)) = records.stored.get(wamid) else {
            report.violations.lost += 1;
            report.example(format!("{token} was acknowledged but never stored"));
            continue;
        };
        let given_to_agent: Vec<&(String, &str)> = user_turns
            .iter()
            .filter(|(text, _)| text.contains(&token))
            .collect();
        let answers: BTreeSet<&str> = replies
            .iter()
            .map(|r| r.text.as_str())
            .filter(|text| text.contains(&token))
            .collect();
        match state.as_str() {
            "answered" if answers.is_empty() => {
                report.violations.lost += 1;
                report.example(format!("{token} is answered but no reply carries it"));
            }
            "answered" => report.answered += 1,
            "failed" if reason.starts_with("gave up after") && kills >= MAX_RECEIVES as usize => {
                // A crash loop: the turn never finished, however often it was tried.
                *report
                    .failed_rightly
                    .entry(format!(
                        "{reason} (the customer's worker was killed {kills} times)"
                    ))
                    .or_default() += 1;
            }
            "failed" => {
                report.violations.failed += 1;
                *report.failed.entry(reason.clone()).or_default() += 1;
                report.example(format!("{token} failed: {reason}"));
            }
            other => {
                report.violations.lost += 1;
                report.example(format!("{token} is still {other}"));
            }
        }
        let twice_in_one = given_to_agent
            .iter()
            .any(|(text, _)| text.matches(&token).count() > 1);
        if given_to_agent.len() > 1 || twice_in_one {
            report.violations.given_to_agent_twice += 1;
            report.example(format!(
                "{token} went to the agent as {given_to_agent:?} (text, chat); the customer's chats: {:?}",
                records
                    .chats_of(customer)
                    .map(|chat| (&chat.chat_id, &chat.status))
                    .collect::<Vec<_>>()
            ));
        }
        let twice_in_one = answers.iter().any(|text| text.matches(&token).count() > 1);
        if answers.len() > 1 || twice_in_one {
            report.violations.answered_twice += 1;
            report.example(format!("{token} was answered by {answers:?}"));
        }
    }
    written.len()
}

/// The label the Retell stand-in puts on a reply: `[chat · turno N]`.
fn reply_label(text: &str) -> Option<(&str, usize)> {
    let label = text.strip_prefix('[')?.split(']').next()?;
    let (chat, turn) = label.split_once(" · turno ")?;
    Some((chat, turn.parse().ok()?))
}

/// Replies reach the customer in the order of their turns: (the chat's place, the turn in it),
/// as the Retell stand-in labels them. A part sent again is judged by [`check_sends`].
fn check_reply_order(
    report: &mut ChaosReport,
    records: &Records,
    customer: &Customer,
    replies: &[&AcceptedMessage],
) {
    let mut last: Option<(usize, usize)> = None;
    let mut seen = HashSet::new();
    for reply in replies {
        let Some((chat, turn)) = reply_label(&reply.text) else {
            continue;
        };
        if !seen.insert(reply.text.as_str()) {
            continue;
        }
        // Chat ids grow with creation: their order is the chats' order.
        let chat_place = records.chats.iter().position(|c| c.chat_id == chat);
        let position = (chat_place.unwrap_or(usize::MAX), turn);
        if last.is_some_and(|last| position < last) {
            report.violations.replies_out_of_order += 1;
            report.example(format!(
                "out of order for customer {}: {}",
                customer.index, reply.text
            ));
        }
        last = Some(position);
    }
}

/// One chat carries the conversation, and one more for each chat Retell ended. An empty chat is
/// a create-chat whose answer never came back (a timeout, a kill): nothing ever went to it.
fn check_chats(report: &mut ChaosReport, records: &Records, customer: &Customer) {
    let (conversation, empty): (Vec<_>, Vec<_>) = records
        .chats_of(customer)
        .partition(|chat| !chat.messages.is_empty());
    report.empty_chats += empty.len();
    let allowed = 1 + records.chats_ended.get(&customer.key).copied().unwrap_or(0);
    if conversation.len() > allowed {
        report.violations.extra_chats += conversation.len() - allowed;
        report.example(format!(
            "customer {} has {} chats",
            customer.index,
            conversation.len()
        ));
    }
}

/// Everything Graph took for the customer is recorded in the store, but for parts whose record
/// never happened: each of those must have a fault that explains it (a part sent again that
/// differs from the first sending is an answer given twice, counted by `check_messages`).
fn check_sends(report: &mut ChaosReport, world: &World, records: &Records, customer: &Customer) {
    // A part recorded twice was sent twice on purpose: a resumed turn repeating what it had
    // recorded as sent. (Templates repeat by nature; `check_forms` counts them per form.)
    let mut recorded: HashMap<&str, usize> = HashMap::new();
    for message in records
        .sent_to(customer)
        .filter(|m| m.message_type == "text" && records.outbound.contains_key(&m.wamid))
    {
        *recorded.entry(message.text.as_str()).or_default() += 1;
    }
    for (text, times) in recorded.into_iter().filter(|(_, times)| *times > 1) {
        report.violations.unexplained_resends += times - 1;
        report.example(format!(
            "customer {} was sent {text:?} {times} times, each recorded",
            customer.index
        ));
    }
    let receives = world.queue.inner().handler().receives_of(&customer.key);
    for message in records
        .sent_to(customer)
        .filter(|m| !records.outbound.contains_key(&m.wamid))
    {
        let at = message.accepted_at;
        let resent = &mut report.resent;
        let killed = || {
            // Up to a second after the kill: a request on its way when the worker died is
            // still taken (the customer's next receive comes 2 s later at the earliest).
            records.kills.iter().any(|kill| {
                kill.customer == customer.key
                    && kill.job_started <= at
                    && at <= kill.killed_at + Duration::from_secs(1)
            })
        };
        let store_down = || {
            records
                .store_down
                .iter()
                .any(|(start, end)| *start <= at + Duration::from_secs(2) && at <= *end)
        };
        // The client gave up on Graph's answer: a slow answer scripted, or one the loaded
        // machine made slow (the receive ended on the timeout).
        let gave_up_waiting = || {
            receives
                .iter()
                .filter(|record| record.started <= at)
                .max_by_key(|record| record.started)
                .is_some_and(|record| record.outcome.starts_with("WhatsApp did not answer"))
        };
        let explained = if message.answer_delay.is_some() || gave_up_waiting() {
            resent.answered_late += 1;
            true
        } else if killed() {
            resent.after_kill += 1;
            true
        } else if store_down() {
            resent.store_down += 1;
            true
        } else {
            false
        };
        if !explained {
            report.violations.unexplained_resends += 1;
            let since = |t: Instant| t.saturating_duration_since(world.started).as_secs_f64();
            let near = |t: Instant| (since(t) - since(at)).abs() < 3.0;
            let receives: Vec<String> = receives
                .iter()
                .filter(|record| near(record.started) || near(record.ended))
                .map(|record| {
                    format!(
                        "+{:.2}–{:.2} s receive {}: {}",
                        since(record.started),
                        since(record.ended),
                        record.receive,
                        record.outcome
                    )
                })
                .collect();
            let copies: Vec<String> = records
                .sent_to(customer)
                .filter(|m| m.text == message.text)
                .map(|m| {
                    format!(
                        "+{:.2} s{}{}",
                        since(m.accepted_at),
                        if records.outbound.contains_key(&m.wamid) {
                            " recorded"
                        } else {
                            ""
                        },
                        m.answer_delay
                            .map_or(String::new(), |d| format!(" answered {d:?} late"))
                    )
                })
                .collect();
            report.example(format!(
                "Graph took a {} for customer {} at +{:.2} s that the store never recorded, and nothing explains it: {:?}; taken at {}; the customer's receives around it: {}",
                message.message_type,
                customer.index,
                since(at),
                message.text,
                copies.join(", "),
                receives.join("; ")
            ));
        }
    }
}

/// Each recorded form started, with exactly one first-contact template; a form whose client
/// gave up is counted, and must have been started if the store had recorded it.
fn check_forms(
    report: &mut ChaosReport,
    world: &World,
    records: &Records,
    customer: &Customer,
    answered_at: &mut Vec<(Instant, Option<Instant>)>,
) {
    let submissions: Vec<&(String, String, String)> = records
        .submissions
        .iter()
        .filter(|(key, _, _)| *key == customer.key)
        .collect();
    let started = submissions
        .iter()
        .filter(|(_, status, _)| status == "started")
        .count();
    for (_, status, reason) in &submissions {
        match status.as_str() {
            "started" => {}
            "skipped" | "held" => {
                *report
                    .forms
                    .not_contacted
                    .entry(format!("{status}: {reason}"))
                    .or_default() += 1;
            }
            _ => {
                report.violations.forms_unfinished += 1;
                report.example(format!(
                    "the form of customer {} ended {status}: {reason}",
                    customer.index
                ));
            }
        }
    }
    let templates = |by_turn: bool| {
        records
            .outbound
            .values()
            .filter(|(key, kind, turn)| {
                *key == customer.key && kind == "template" && *turn == by_turn
            })
            .count()
    };
    let lead_templates = templates(false);
    report.forms.started += started;
    report.forms.lead_templates += lead_templates;
    report.forms.turn_templates += templates(true);
    if lead_templates != started {
        report.violations.lead_templates += 1;
        report.example(format!(
            "customer {} has {started} started forms and {lead_templates} first-contact templates",
            customer.index
        ));
    }
    let Some(client) = lock(&world.forms).get(&customer.key).cloned() else {
        return;
    };
    if client.abandoned {
        report.forms.abandoned += 1;
        report.forms.abandoned_recorded += usize::from(!submissions.is_empty());
    }
    let contacted = submissions
        .iter()
        .any(|(_, status, _)| !matches!(status.as_str(), "skipped" | "held"));
    if contacted {
        let template = records
            .sent_to(customer)
            .filter(|m| m.message_type == "template")
            .map(|m| m.accepted_at)
            .min();
        answered_at.push((client.first_attempt, template));
    }
}

/// Where the kills fell, by what the stand-ins had seen of the customer during the killed job.
fn kill_moments(records: &Records) -> super::KillMoments {
    let chat_owner: HashMap<&str, &str> = records
        .chats
        .iter()
        .filter_map(|chat| Some((chat.chat_id.as_str(), chat_customer(chat)?)))
        .collect();
    let retell_customer = |request: &RetellRequest| -> Option<String> {
        let chat_id = match request.operation {
            RetellOperation::CreateChat => {
                return request.body["metadata"]["customer_key"]
                    .as_str()
                    .map(str::to_owned);
            }
            RetellOperation::CreateChatCompletion => request.body["chat_id"].as_str(),
            RetellOperation::GetChat | RetellOperation::EndChat => request.chat_id.as_deref(),
        }?;
        chat_owner.get(chat_id).map(|key| (*key).to_owned())
    };
    let mut moments = super::KillMoments::default();
    for kill in &records.kills {
        let during = |at: Instant| kill.job_started <= at && at <= kill.killed_at;
        let graph = records
            .accepted
            .iter()
            .any(|m| m.to == format!("+{}", kill.customer) && during(m.accepted_at));
        let retell = records.retell.iter().any(|r| {
            during(r.received_at) && retell_customer(r).as_deref() == Some(kill.customer.as_str())
        });
        match (graph, retell) {
            (true, _) => moments.after_graph += 1,
            (false, true) => moments.after_retell += 1,
            (false, false) => moments.before_calls_out += 1,
        }
    }
    moments
}
