//! `make bench`: Secrets Manager calls per tenant per simulated day, for the default and the
//! economy profile, counted by the Secrets Manager model under a warm refresher (one run a minute,
//! a cold start every hour), and the monthly cost per tenant they come to at list prices. The
//! README's cost table is made from what this prints.

use std::sync::Arc;

use broker::clock::{ManualClock, SharedClock};
use broker::store::memory::{MemoryStore, Op};
use broker::telemetry::Metric;
use broker_tests::sim::Simulator;
use broker_tests::support::seed_due_tenants;
use chrono::Duration;
use refresher::{Refresher, TenantOutcome};

const TENANTS: usize = 10;
const RUNS_PER_DAY: i64 = 24 * 60;
/// Lambda recycles execution environments; assume a cold refresher (nothing remembered) about
/// hourly, at runs that do not line up with renewals.
const COLD_START_EVERY_RUNS: i64 = 61;

/// US East list prices.
const SECRET_MONTH: f64 = 0.40;
const PER_10K_CALLS: f64 = 0.05;
const METRIC_MONTH: f64 = 0.30;
const LOG_GB: f64 = 0.50;
const DAYS_PER_MONTH: f64 = 30.0;
/// One `renewal` log line, as the refresher writes it in Lambda (JSON, no secrets).
const LOG_LINE_BYTES: f64 = 260.0;

struct Profile {
    name: &'static str,
    vars: &'static [(&'static str, &'static str)],
}

const PROFILES: [Profile; 2] = [
    Profile {
        name: "default",
        vars: &[
            ("SESSION_SLOTS", "6"),
            ("REFRESH_MARGIN_SECONDS", "150"),
            ("PER_TENANT_METRICS", "true"),
        ],
    },
    Profile {
        name: "economy",
        vars: &[
            ("SESSION_SLOTS", "5"),
            ("REFRESH_MARGIN_SECONDS", "100"),
            ("PER_TENANT_METRICS", "false"),
        ],
    },
];

#[tokio::main]
async fn main() {
    println!(
        "Secrets Manager calls per tenant per simulated day ({TENANTS} tenants, one run a minute, \
         a cold refresher every {COLD_START_EVERY_RUNS} runs), and the monthly cost per tenant"
    );
    for profile in &PROFILES {
        run(profile).await;
    }
}

async fn run(profile: &Profile) {
    let manual = ManualClock::starting_now();
    let clock: SharedClock = Arc::new(manual.clone());
    let sim = Simulator::start(clock.clone()).await.expect("simulator");
    let store = MemoryStore::new(clock.clone());
    let prefix = format!("cost-{}/", profile.name);
    let tenants = seed_due_tenants(&store.unmetered(), &prefix, &sim, TENANTS, clock.now()).await;
    let config = broker_tests::support::config(&sim, &prefix, &tenants.join(","), profile.vars);
    let before = store.stats();
    let mut refresher = None;
    let (mut min_left, mut unusable, mut renewals) = (i64::MAX, 0u64, 0u64);
    for run in 0..RUNS_PER_DAY {
        if run % COLD_START_EVERY_RUNS == 0 {
            refresher = None;
        }
        let r = refresher.get_or_insert_with(|| {
            Refresher::new(&config, store.clone(), clock.clone()).expect("refresher")
        });
        let pass = r.run_pass(clock.now() + Duration::seconds(50)).await;
        for t in &pass.tenants {
            min_left = min_left.min(t.seconds_left.unwrap_or(0));
            unusable += u64::from(!t.usable);
            renewals += u64::from(matches!(
                t.outcome,
                TenantOutcome::Refreshed | TenantOutcome::LoggedIn
            ));
        }
        manual.advance(Duration::seconds(60));
    }
    let stats = store.stats();
    let per_tenant = |n: u64| n as f64 / TENANTS as f64;
    let calls = |op: Op| {
        per_tenant(
            stats.calls.get(&op).copied().unwrap_or(0)
                - before.calls.get(&op).copied().unwrap_or(0),
        )
    };
    let (batch, gets, puts, creates) = (
        calls(Op::BatchGet),
        calls(Op::Get),
        calls(Op::Put),
        calls(Op::Create),
    );
    let batch_values = per_tenant(stats.batch_values - before.batch_values);
    let slots: usize = profile
        .vars
        .iter()
        .find(|(k, _)| *k == "SESSION_SLOTS")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(6);
    let busiest_slot = (0..20)
        .map(|i| {
            tenants
                .iter()
                .map(|t| {
                    let name = config.names().slot(t, i);
                    let count = |w: &std::collections::BTreeMap<String, u64>| {
                        w.get(&name).copied().unwrap_or(0)
                    };
                    count(&stats.writes) - count(&before.writes)
                })
                .max()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    // Priced per secret a batch returns (conservative: AWS may count a batch as one call). Slot
    // creates happen on a tenant's first day only, so they are not a monthly cost.
    let billed_calls = batch_values + gets + puts;
    let secrets = (slots + 1) as f64;
    let metrics = Metric::REFRESHER
        .iter()
        .filter(|m| config.per_tenant_metrics && m.per_tenant())
        .count() as f64;
    let emf_bytes = broker::telemetry::emf(
        &tenants[0],
        &Metric::REFRESHER.map(|m| (m, 1.0)),
        config.per_tenant_metrics,
        0,
    )
    .to_string()
    .len() as f64;
    let log_gb = (emf_bytes + LOG_LINE_BYTES) * RUNS_PER_DAY as f64 * DAYS_PER_MONTH / 1e9;
    let cost_secrets = secrets * SECRET_MONTH;
    let cost_calls = billed_calls * DAYS_PER_MONTH / 10_000.0 * PER_10K_CALLS;
    let cost_metrics = metrics * METRIC_MONTH;
    let cost_logs = log_gb * LOG_GB;
    let total = cost_secrets + cost_calls + cost_metrics + cost_logs;
    println!(
        "  {:<8} (K={slots}, margin {} s): batch reads {batch:.0} ({batch_values:.0} secret values), \
         gets {gets:.0}, puts {puts:.0}, creates {creates:.1} (first day only); renewals {:.0}, busiest slot {busiest_slot} \
         versions/day, least seconds left after a run {min_left}, runs ending unusable {unusable}",
        profile.name,
        config.refresh_margin.as_secs(),
        per_tenant(renewals),
    );
    println!(
        "           per tenant per month: {secrets:.0} secrets ${cost_secrets:.2}, {:.0} billed calls \
         ${cost_calls:.2}, {metrics:.0} per-tenant metrics ${cost_metrics:.2}, logs {:.0} MB \
         ${cost_logs:.2}: ${total:.2} (plus the refresher's Lambda time, shared by all tenants)",
        billed_calls * DAYS_PER_MONTH,
        log_gb * 1000.0,
    );
}
