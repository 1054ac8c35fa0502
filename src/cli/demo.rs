//! `quotahub demo`: what quotahub does, in one command. It starts a hub on a temporary SQLite
//! database with fresh development certificates, loads a generated city through the real RPCs as
//! each agency over mutual TLS, and shows a discipline inspector's live feed of the findings as
//! they arrive, then a summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::api::Limits;
use crate::clock::Clock;
use crate::domain::{Agency, AgencyKind};
use crate::generator::{Dataset, GenConfig};
use crate::proto;
use crate::proto::feed_message::Message;
use crate::server::{Application, ServerTls};
use crate::store::{Checks, Store, StoreOptions};

/// Flags of `quotahub demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// small (about 40 institutions, 1,500 people) or city (2,500 institutions, 140,000 people).
    #[arg(long, default_value = "small")]
    pub scale: String,
    /// Seed of the generated city.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Feed lines to show (the rest are counted).
    #[arg(long, default_value_t = 40)]
    pub show: usize,
}

/// Records per bulk stream.
const STREAM: usize = 2_000;

async fn connect(
    address: std::net::SocketAddr,
    pki: &std::path::Path,
    agency: &Agency,
) -> anyhow::Result<Channel> {
    let (cert, key) = crate::pki::agency_files(pki, agency);
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(crate::tls::client_channel(
        &format!("https://{address}"),
        &read(&pki.join("ca.pem"))?,
        &read(&cert)?,
        &read(&key)?,
    )
    .await?)
}

/// Pushes every record of the dataset through the bulk RPCs, as the agency of each kind.
async fn load(
    dataset: &Dataset,
    address: std::net::SocketAddr,
    pki: &std::path::Path,
    root: &crate::domain::Jurisdiction,
) -> anyhow::Result<BTreeMap<&'static str, (u64, u64)>> {
    let as_kind = |kind| Agency::new(root.clone(), kind);
    let staffing = connect(address, pki, &as_kind(AgencyKind::StaffingOffice)).await?;
    let hr = connect(address, pki, &as_kind(AgencyKind::Hr)).await?;
    let organization = connect(address, pki, &as_kind(AgencyKind::Organization)).await?;
    let finance = connect(address, pki, &as_kind(AgencyKind::Finance)).await?;
    let mut totals: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    macro_rules! push_all {
        ($label:literal, $records:expr, $client:ty, $channel:expr, $method:ident) => {{
            let mut client =
                <$client>::new($channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
            for chunk in $records.chunks(STREAM) {
                let response = client
                    .$method(tokio_stream::iter(chunk.to_vec()))
                    .await?
                    .into_inner();
                let entry = totals.entry($label).or_default();
                entry.0 += response.accepted + response.replayed;
                entry.1 += response.rejected;
            }
        }};
    }
    use proto::finance_service_client::FinanceServiceClient as Finance;
    use proto::organization_service_client::OrganizationServiceClient as Organization;
    use proto::personnel_service_client::PersonnelServiceClient as Personnel;
    use proto::staffing_service_client::StaffingServiceClient as Staffing;
    push_all!(
        "institutions",
        dataset.institutions,
        Staffing<Channel>,
        staffing,
        push_institutions
    );
    push_all!(
        "quotas",
        dataset.quotas,
        Staffing<Channel>,
        staffing,
        push_quotas
    );
    push_all!(
        "leader posts",
        dataset.leader_posts,
        Staffing<Channel>,
        staffing,
        push_leader_posts
    );
    push_all!(
        "staffing plans",
        dataset.plans,
        Staffing<Channel>,
        staffing,
        push_staffing_plans
    );
    push_all!(
        "hiring approvals",
        dataset.approvals,
        Staffing<Channel>,
        staffing,
        push_hiring_approvals
    );
    push_all!(
        "personnel events",
        dataset.events,
        Personnel<Channel>,
        hr,
        push_personnel_events
    );
    push_all!(
        "appointments",
        dataset.appointments,
        Organization<Channel>,
        organization,
        push_appointments
    );
    push_all!(
        "payroll lines",
        dataset.payroll,
        Finance<Channel>,
        finance,
        push_payroll_lines
    );
    push_all!(
        "funding",
        dataset.fundings,
        Finance<Channel>,
        finance,
        push_fundings
    );
    Ok(totals)
}

/// Runs the demo, writing to `out`.
pub async fn run(args: DemoArgs, mut out: impl Write) -> anyhow::Result<()> {
    let config = match args.scale.as_str() {
        "small" => GenConfig::small(args.seed),
        "city" => GenConfig::city(args.seed),
        other => anyhow::bail!("--scale takes small or city, not `{other}`"),
    };
    let dir = tempfile::Builder::new().prefix("quotahub-demo").tempdir()?;
    let pki = dir.path().join("pki");
    crate::pki::init(&pki, false)?;
    let tls = ServerTls::read(
        &pki.join("ca.pem"),
        &pki.join("server.pem"),
        &pki.join("server-key.pem"),
    )?;
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    // The generated city is as of its own date; the hub's clock stands on it.
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_checks(Checks {
            clock: Clock::on(config.as_of),
            ..Checks::default()
        });
    crate::server::register_dev_agencies(&store, &pki).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let application = Application::with_listener(listener, store.clone(), &tls, Limits::default())?;
    let address = application.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    writeln!(
        out,
        "quotahub demo: a hub on https://{address} (mutual TLS), data in {}",
        dir.path().display()
    )?;
    writeln!(
        out,
        "generating a city of {} institutions and {} people as of {} ...",
        config.institutions, config.people, config.as_of
    )?;
    let dataset = crate::generator::generate(&config);

    // The discipline inspector of the city subscribes before the agencies push.
    let inspector = connect(
        address,
        &pki,
        &Agency::new(config.root.clone(), AgencyKind::Discipline),
    )
    .await?;
    let mut feed = proto::feed_service_client::FeedServiceClient::new(inspector);
    feed.put_subscription(proto::PutSubscriptionRequest {
        subscription: Some(proto::Subscription {
            name: "demo".into(),
            ..Default::default()
        }),
    })
    .await?;
    let mut stream = feed
        .subscribe(proto::SubscribeRequest {
            name: "demo".into(),
            max_in_flight: 10_000,
            heartbeat_ms: 500,
            ..Default::default()
        })
        .await?
        .into_inner();

    writeln!(
        out,
        "\nthe agencies push their records; the discipline inspector's live feed:\n"
    )?;
    writeln!(
        out,
        "{:>6}  {:<9} {:<26} {:<9} {:<18} explanation",
        "seq", "event", "rule", "severity", "institution"
    )?;
    let started = Instant::now();
    let mut loading = tokio::spawn({
        let pki = pki.clone();
        let root = config.root.clone();
        async move {
            load(&dataset, address, &pki, &root)
                .await
                // All of it pushed now: the freshness truth is the delivery timeline's.
                .map(|totals| {
                    let planted = dataset.truth.iter().filter(|p| !p.code.about_agency());
                    (totals, planted.count())
                })
        }
    });
    let mut shown = 0usize;
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_seq = 0u64;
    let mut loaded = None;
    let mut target: Option<u64> = None;
    loop {
        tokio::select! {
            message = stream.message() => {
                let Some(message) = message? else { break };
                if let Some(Message::Event(event)) = message.message {
                        let finding = event.finding.clone().unwrap_or_default();
                        let code = name(proto::RuleCode::try_from(finding.code).map(|c| c.as_str_name()), "RULE_CODE_");
                        let kind = name(proto::FeedEventType::try_from(event.event_type).map(|t| t.as_str_name()), "FEED_EVENT_TYPE_");
                        if kind == "RAISED" {
                            *by_code.entry(code.clone()).or_default() += 1;
                        }
                        if shown < args.show {
                            let severity = name(proto::Severity::try_from(finding.severity).map(|s| s.as_str_name()), "SEVERITY_");
                            writeln!(out, "{:>6}  {:<9} {:<26} {:<9} {:<18} {}", event.seq, kind, code, severity, finding.institution_uscc, finding.explanation_zh)?;
                        } else if shown == args.show {
                            writeln!(out, "   ... (the feed goes on; counting the rest)")?;
                        }
                        shown += 1;
                        last_seq = event.seq;
                        feed.ack(proto::AckRequest { name: "demo".into(), seq: event.seq }).await?;
                }
            }
            joined = &mut loading, if loaded.is_none() => {
                loaded = Some(joined??);
                // Everything is pushed: read on until the feed's head as it stands now.
                target = Some(u64::try_from(store.feed_head().await.map_err(|e| anyhow::anyhow!("{e}"))?).unwrap_or_default());
            }
        }
        if target.is_some_and(|target| last_seq >= target) {
            break;
        }
    }
    let (totals, planted) =
        loaded.ok_or_else(|| anyhow::anyhow!("the feed ended before the data was loaded"))?;
    let elapsed = started.elapsed();
    writeln!(out, "\nloaded in {:.1} s:", elapsed.as_secs_f64())?;
    for (kind, (accepted, refused)) in &totals {
        writeln!(
            out,
            "  {kind:<18} {accepted:>9} accepted {refused:>6} refused"
        )?;
    }
    let events: u64 = by_code.values().sum();
    let open = store
        .findings(&crate::store::reconcile::FindingFilter {
            open: true,
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut open_by_code: BTreeMap<String, u64> = BTreeMap::new();
    for finding in &open {
        *open_by_code
            .entry(finding.finding.key.code.to_string())
            .or_default() += 1;
    }
    writeln!(
        out,
        "\nthe inspector saw {events} findings raised on the feed; {} are open now (the generator planted {planted}):",
        open.len()
    )?;
    for (code, count) in &open_by_code {
        writeln!(out, "  {code:<26} {count:>6}")?;
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn name(value: Result<&'static str, prost::UnknownEnumValue>, prefix: &str) -> String {
    value
        .map(|name| name.trim_start_matches(prefix).to_owned())
        .unwrap_or_default()
}
