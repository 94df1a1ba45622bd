//! `flowc plan FILE [--zone Z] [--from DATETIME] [--format text|json]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::ir::ZoneSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The .flow file
    file: PathBuf,
    /// The IANA zone to show callable windows in (default: the flow's
    /// fallback zone from its `timezone` line, else UTC)
    #[arg(long)]
    zone: Option<String>,
    /// Where the week starts, local to the zone: `2026-12-01 09:00` (default:
    /// the flow's `start`, else now)
    #[arg(long)]
    from: Option<String>,
    /// The contacts' country, or country and subdivision (`MA`, `US-CA`),
    /// whose public holidays `no holidays from contact` closes in the week
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

pub fn run(args: Args) -> ExitCode {
    let program = match super::flow_program(&args.file, "nothing to plan") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flow = program.flow.as_ref().expect("flow_program returns a flow");
    let zone_name = args.zone.clone().unwrap_or_else(|| {
        flow.timezone
            .iter()
            .find_map(|s| match s {
                ZoneSource::Zone(z) => Some(z.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "UTC".into())
    });
    let Ok(zone) = Tz::from_str(&zone_name) else {
        eprintln!("error: \"{zone_name}\" is not an IANA time zone, such as \"America/New_York\"");
        return ExitCode::from(super::EXIT_USAGE);
    };
    let from = match args.from.as_deref() {
        Some(text) => match parse_from(text, zone) {
            Some(t) => t,
            None => {
                eprintln!("error: cannot read --from \"{text}\": write a local date and time such as \"2026-12-01 09:00\"");
                return ExitCode::from(super::EXIT_USAGE);
            }
        },
        None => flow
            .start
            .as_ref()
            .and_then(|s| {
                let tz = s
                    .zone
                    .as_deref()
                    .and_then(|z| Tz::from_str(z).ok())
                    .unwrap_or(zone);
                tz.from_local_datetime(&s.local)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            })
            .unwrap_or_else(Utc::now),
    };
    let region = args.region.as_deref().map(str::to_ascii_uppercase);
    if let Some(r) = region
        .as_deref()
        .filter(|r| !crate::calendar::holidays::known(r))
    {
        let regions = crate::calendar::holidays::regions();
        let hint = crate::diagnostic::did_you_mean(r, regions.iter().copied())
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        eprintln!("error: flowc has no public holidays for the region \"{r}\"{hint} (an ISO country code such as \"MA\", or a country and subdivision such as \"US-CA\")");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let plan = crate::plan::plan(flow, zone, from, region.as_deref());
    match args.format {
        PlanFormat::Text => out!("{}", plan.render()),
        PlanFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("a plan always serialises")
        ),
    }
    ExitCode::SUCCESS
}

fn parse_from(text: &str, zone: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(&format!("{text} 00:00"), "%Y-%m-%d %H:%M"))
        .ok()?;
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}
