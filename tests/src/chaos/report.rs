//! What a chaos run reports: what happened, how long customers waited, and the counts that must
//! be zero.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::OutageKind;

/// How much happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volume {
    pub customers: usize,
    pub messages: usize,
    /// Webhook POSTs made, duplicates and retries after a non-200 included.
    pub deliveries: usize,
    pub duplicate_deliveries: usize,
    /// Messages first delivered after later ones.
    pub late_deliveries: usize,
    /// Customers who sent the form (whether or not the bridge took it).
    pub forms: usize,
    /// Form POSTs, double submits and retries included.
    pub form_posts: usize,
    pub jobs_run: usize,
    /// Jobs whose worker was killed before the job finished.
    pub workers_killed: usize,
    /// Jobs drawn to be killed whose turn finished before the moment drawn.
    pub kills_too_late: usize,
    pub chats_ended_by_retell: usize,
    pub retell_requests: usize,
    pub retell_failures: usize,
    pub graph_requests: usize,
    pub graph_failures: usize,
    /// Sends Graph took and answered only after the client had given up.
    pub graph_slow_answers: usize,
    /// Text replies WhatsApp accepted.
    pub replies: usize,
    pub seconds: f64,
}

/// Where in a turn the workers were killed, told by what the stand-ins had seen of the
/// customer during the killed job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillMoments {
    /// Nothing had reached Retell or Graph yet (the claim, the store's reads).
    pub before_calls_out: usize,
    /// Retell had been called (a chat created, a completion asked or answered), Graph not.
    pub after_retell: usize,
    /// Graph had taken a reply part or a template.
    pub after_graph: usize,
}

/// Reply parts and templates Graph took more than once. Graph's send has no idempotency key: a
/// part Graph took whose record the store never got is sent again when the turn is retried (at
/// least once, rather than maybe never). Each is matched to what explains it; one nothing
/// explains is a violation ([`Violations::unexplained_resends`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resent {
    /// The worker was killed after Graph took the part, before the store recorded it.
    pub after_kill: usize,
    /// Graph took the part and answered after the client had given up waiting.
    pub answered_late: usize,
    /// The store was down when the part was to be recorded.
    pub store_down: usize,
}

impl Resent {
    pub fn total(&self) -> usize {
        self.after_kill + self.answered_late + self.store_down
    }
}

/// One outage window of the run, and how long the bridge took to catch up after it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowReport {
    pub kind: OutageKind,
    /// From the run's start.
    pub from: Duration,
    pub to: Duration,
    /// Requests (or queue sends) refused during the window.
    pub refused: usize,
    /// From the window's end to the moment everything written (and every form recorded) before
    /// the end was answered; `None` when something of it never was.
    pub caught_up_after: Option<Duration>,
}

/// The forms' side of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormsReport {
    /// Form clients that gave up after their first 5xx, as some browsers and scripts do.
    pub abandoned: usize,
    /// Of those, forms the store had recorded before the 5xx (the queue refused the job):
    /// only the sweeper could start them.
    pub abandoned_recorded: usize,
    /// Submissions started (the chat opened and the template sent).
    pub started: usize,
    /// Submissions skipped or held, by reason (a double submit across a deduplication period).
    pub not_contacted: BTreeMap<String, usize>,
    /// Templates recorded as a form's first contact.
    pub lead_templates: usize,
    /// Templates a turn sent because the 24-hour window had closed: not a lead's.
    pub turn_templates: usize,
}

/// What the sweeper did while the run went on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweeperReport {
    pub runs: usize,
    /// Runs that could not finish (the store or the queue down).
    pub failed_runs: usize,
    pub turns: usize,
    pub submissions: usize,
    pub gave_up: u64,
}

/// From a message the webhook acknowledged to Graph taking the reply that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub messages: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut waits: Vec<Duration>) -> Option<Latency> {
        if waits.is_empty() {
            return None;
        }
        waits.sort();
        let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            messages: waits.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: waits[waits.len() - 1],
        })
    }
}

/// What must be zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    /// Messages the webhook acknowledged and nobody answered: not stored, still waiting at the
    /// end, or marked answered with no reply carrying them.
    pub lost: usize,
    /// Messages that ended failed with no fault of the run making failure the right outcome.
    pub failed: usize,
    /// Messages whose deliveries the webhook refused for as long as the run's Meta retries.
    pub not_taken: usize,
    /// Messages the agent was given in more than one completion, or twice in one.
    pub given_to_agent_twice: usize,
    /// Messages more than one reply answered, or that one reply carried twice.
    pub answered_twice: usize,
    /// Replies that reached a customer after a reply to a later turn.
    pub replies_out_of_order: usize,
    /// Chats carrying a customer's conversation beyond one (plus one for each chat Retell ended).
    pub extra_chats: usize,
    /// Recorded form submissions neither started nor skipped for a reason.
    pub forms_unfinished: usize,
    /// Started forms without exactly one first-contact template.
    pub lead_templates: usize,
    /// Messages Graph took that the store never recorded and that no kill, late answer or store
    /// outage explains, and reply parts sent again after their record (recorded twice).
    pub unexplained_resends: usize,
    /// Jobs the queue gave up on.
    pub dead_letters: usize,
}

impl Violations {
    /// Each count with what it counts.
    pub fn counts(&self) -> [(&'static str, usize); 11] {
        [
            ("inbound messages lost", self.lost),
            ("inbound messages failed", self.failed),
            ("deliveries never taken", self.not_taken),
            ("texts given to the agent twice", self.given_to_agent_twice),
            ("inbound messages answered twice", self.answered_twice),
            ("replies out of order", self.replies_out_of_order),
            ("conversation chats beyond one", self.extra_chats),
            ("forms neither started nor skipped", self.forms_unfinished),
            ("forms without exactly one template", self.lead_templates),
            ("sends nothing explains", self.unexplained_resends),
            ("jobs dead-lettered", self.dead_letters),
        ]
    }

    pub fn total(&self) -> usize {
        self.counts().iter().map(|(_, count)| count).sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    pub volume: Volume,
    pub violations: Violations,
    /// Messages answered by the agent.
    pub answered: usize,
    /// Messages failed for a reason a fault of the run made right, by reason.
    pub failed_rightly: BTreeMap<String, usize>,
    /// Messages failed with nothing to make it right, by reason (counted in the violations).
    pub failed: BTreeMap<String, usize>,
    pub resent: Resent,
    pub kill_moments: KillMoments,
    /// The length of the run's turns the kill moments were drawn over: (p50, p90).
    pub turn_lengths: Option<(Duration, Duration)>,
    /// Receives that asked to be retried, by reason (kills included).
    pub retries: BTreeMap<String, usize>,
    /// Receives by their number: how many jobs needed a 2nd, 3rd, … receive.
    pub receives: BTreeMap<u32, usize>,
    /// When the random faults and the kills stopped, from the run's start (the customers were
    /// done; the outages were over before).
    pub faults_ended: Option<Duration>,
    /// Chats Retell created whose answer the worker never got (a create-chat that timed out, a
    /// worker killed before it attached the chat): nothing was ever sent to them, and Retell
    /// ends them when they stay silent. Retell's create-chat has no idempotency key either.
    pub empty_chats: usize,
    pub forms: FormsReport,
    pub sweeper: SweeperReport,
    pub latency: Option<Latency>,
    pub windows: Vec<WindowReport>,
    /// Jobs still waiting for a retry when the run ended, with nothing of theirs left unanswered.
    pub jobs_still_queued: usize,
    /// The message that waited longest for its reply, and what its customer's jobs went
    /// through meanwhile.
    pub slowest: Option<String>,
    /// A few examples of each violation, for whoever has to find the cause.
    pub examples: Vec<String>,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.violations.total() == 0
    }

    pub(super) fn example(&mut self, text: String) {
        if self.examples.len() < 16 {
            self.examples.push(text);
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.volume;
        writeln!(
            f,
            "volume: {} customers, {} messages, {} webhook deliveries ({} duplicates, {} late), {} forms ({} posts), {:.1} s",
            v.customers,
            v.messages,
            v.deliveries,
            v.duplicate_deliveries,
            v.late_deliveries,
            v.forms,
            v.form_posts,
            v.seconds
        )?;
        let k = &self.kill_moments;
        let drawn_over = match self.turn_lengths {
            Some((p50, p90)) => format!(
                "uniformly over a turn's length, the run's turns taking {} ms (p50), {} ms (p90)",
                p50.as_millis(),
                p90.as_millis()
            ),
            None => "over 1 ms–3 s".to_owned(),
        };
        writeln!(
            f,
            "faults: {} workers killed in {} jobs ({drawn_over}): {} before any call out, {} after calling Retell, {} after Graph took a part; {} more drawn too late to hit",
            v.workers_killed,
            v.jobs_run,
            k.before_calls_out,
            k.after_retell,
            k.after_graph,
            v.kills_too_late,
        )?;
        writeln!(
            f,
            "        {}/{} Retell requests failed, {}/{} Graph requests failed ({} taken and answered after the client gave up), {} chats ended by Retell",
            v.retell_failures,
            v.retell_requests,
            v.graph_failures,
            v.graph_requests,
            v.graph_slow_answers,
            v.chats_ended_by_retell
        )?;
        if let Some(ended) = self.faults_ended {
            writeln!(
                f,
                "        the customers done, random faults and kills stopped at {}",
                secs(ended)
            )?;
        }
        let retried: usize = self.retries.values().sum();
        let receives: Vec<String> = self
            .receives
            .iter()
            .map(|(receive, count)| format!("#{receive} ×{count}"))
            .collect();
        writeln!(
            f,
            "retries: {retried} receives asked to be retried; receives by number: {}",
            receives.join(", ")
        )?;
        if let Some(last) = self.receives.get(&super::MAX_RECEIVES) {
            writeln!(
                f,
                "  {last} jobs needed their last receive (#{}): one more failure and they would have been dead-lettered",
                super::MAX_RECEIVES
            )?;
        }
        for (reason, count) in &self.retries {
            writeln!(f, "  retried ×{count}: {reason}")?;
        }
        for window in &self.windows {
            let caught_up = match window.caught_up_after {
                Some(after) => format!(
                    "everything written before its end answered {} after it",
                    secs(after)
                ),
                None => "something written before its end was never answered".to_owned(),
            };
            writeln!(
                f,
                "outage: {:<34} {:>7} – {:<7} {:>5} refused; {caught_up}",
                window.kind.to_string(),
                secs(window.from),
                secs(window.to),
                window.refused,
            )?;
        }
        let s = &self.sweeper;
        writeln!(
            f,
            "sweeper: {} runs ({} could not finish), re-queued {} turns and {} form submissions, gave up on {}",
            s.runs, s.failed_runs, s.turns, s.submissions, s.gave_up
        )?;
        let forms = &self.forms;
        writeln!(
            f,
            "forms: {} started with {} first-contact templates; {} clients gave up after a 5xx ({} of those forms recorded, started by the sweeper); {} templates sent in turns (window closed), not leads'",
            forms.started,
            forms.lead_templates,
            forms.abandoned,
            forms.abandoned_recorded,
            forms.turn_templates
        )?;
        for (reason, count) in &forms.not_contacted {
            writeln!(f, "  form not contacted ×{count}: {reason}")?;
        }
        let failed: usize = self.failed.values().sum();
        let failed_rightly: usize = self.failed_rightly.values().sum();
        writeln!(
            f,
            "outcome: {} messages answered, {failed} failed (violations), {failed_rightly} failed because a fault made it right, {} replies sent",
            self.answered, v.replies
        )?;
        for (reason, count) in &self.failed_rightly {
            writeln!(f, "  failed rightly ×{count}: {reason}")?;
        }
        for (reason, count) in &self.failed {
            writeln!(f, "  failed ×{count}: {reason}")?;
        }
        match &self.latency {
            Some(l) => writeln!(
                f,
                "message to reply (the webhook's 200 to Graph taking the reply), {} messages: p50 {}, p99 {}, max {}",
                l.messages,
                secs(l.p50),
                secs(l.p99),
                secs(l.max)
            )?,
            None => writeln!(f, "message to reply: no message was answered")?,
        }
        if let Some(slowest) = &self.slowest {
            writeln!(f, "  slowest: {slowest}")?;
        }
        let r = &self.resent;
        writeln!(
            f,
            "sent again, at least once (Graph has no idempotency key): {} reply parts and templates — {} after a kill, {} answered after the client gave up, {} with the store down when they were to be recorded; any other is a violation below",
            r.total(),
            r.after_kill,
            r.answered_late,
            r.store_down
        )?;
        writeln!(
            f,
            "chats created whose answer was lost (left empty, never used): {}",
            self.empty_chats
        )?;
        if self.jobs_still_queued > 0 {
            writeln!(
                f,
                "jobs still waiting for a retry at the end, with nothing of theirs unanswered: {}",
                self.jobs_still_queued
            )?;
        }
        for (name, count) in self.violations.counts() {
            writeln!(f, "{name:>36}: {count}")?;
        }
        for example in &self.examples {
            writeln!(f, "  e.g. {example}")?;
        }
        Ok(())
    }
}
