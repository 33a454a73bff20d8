//! `tailgate bans`: list, add and lift bans of a running tailgate through
//! its admin API (`GET /bans`, `POST /bans`, `DELETE /bans/JAIL/KEY` in
//! `crate::admin::bans`), with `crate::admin::client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::admin::bans::{BanJson, BanOrder, DurationText, BANS_PATH, BAN_PREFIX};
use crate::admin::client::{AdminAnswer, AdminClient};
use crate::config::model::admin::DEFAULT_ADMIN_LISTEN;

/// Where the admin API is, and what to do.
#[derive(Debug, Args)]
pub struct BansArgs {
    /// The admin API's address (default: `[admin] listen` of --config, else 127.0.0.1:12345).
    #[arg(long, value_name = "IP:PORT", global = true)]
    pub admin: Option<SocketAddr>,
    /// Read the admin address from this config file.
    #[arg(long, short, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: BansCommand,
}

#[derive(Debug, Subcommand)]
pub enum BansCommand {
    /// The active bans, soonest to expire last.
    List {
        /// The admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ban KEY in JAIL for --duration.
    Ban {
        jail: String,
        key: String,
        /// How long: "30m", "1h", or seconds.
        #[arg(long, short, value_name = "DURATION")]
        duration: String,
        /// Logged by tailgate with the ban.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift the ban of KEY in JAIL.
    Unban { jail: String, key: String },
}

pub fn main(args: BansArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tailgate bans: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: BansArgs) -> anyhow::Result<()> {
    let addr = match (args.admin, &args.config) {
        (Some(addr), _) => addr,
        (None, Some(path)) => crate::config::load(path)?.admin.listen,
        (None, None) => DEFAULT_ADMIN_LISTEN,
    };
    let client = AdminClient::new(addr);
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    tokio_runtime.block_on(async move {
        match args.command {
            BansCommand::List { json } => list(&client, json).await,
            BansCommand::Ban {
                jail,
                key,
                duration,
                reason,
            } => ban(&client, jail, key, &duration, reason).await,
            BansCommand::Unban { jail, key } => unban(&client, &jail, &key).await,
        }
    })
}

async fn list(client: &AdminClient, json: bool) -> anyhow::Result<()> {
    let answer = expect(
        client.call(Method::GET, BANS_PATH, None).await?,
        StatusCode::OK,
    )?;
    if json {
        print!("{}", String::from_utf8_lossy(&answer.body));
        return Ok(());
    }
    let mut bans: Vec<BanJson> =
        serde_json::from_slice(&answer.body).context("reading the admin API's list")?;
    bans.sort_by_key(|b| std::cmp::Reverse(b.expires_unix_ms));
    print!("{}", table(&bans));
    Ok(())
}

async fn ban(
    client: &AdminClient,
    jail: String,
    key: String,
    duration: &str,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let duration = match duration.parse::<u64>() {
        Ok(secs) => DurationText::Seconds(secs),
        Err(_) => DurationText::Text(duration.to_owned()),
    };
    let order = BanOrder {
        jail,
        key,
        duration,
        reason,
    };
    let body = Bytes::from(serde_json::to_vec(&order)?);
    let answer = client.call(Method::POST, BANS_PATH, Some(body)).await?;
    if answer.status == StatusCode::CONFLICT {
        bail!(
            "{} is banned in {} already: {}",
            order.key,
            order.jail,
            error_text(&answer)
        );
    }
    let answer = expect(answer, StatusCode::CREATED)?;
    let ban: BanJson = serde_json::from_slice(&answer.body).context("reading the new ban")?;
    println!(
        "banned {} in {} until {} ({})",
        ban.key,
        ban.jail,
        ban.expires,
        remaining(ban.remaining_seconds)
    );
    Ok(())
}

async fn unban(client: &AdminClient, jail: &str, key: &str) -> anyhow::Result<()> {
    let path = format!(
        "{BAN_PREFIX}{}/{}",
        utf8_percent_encode(jail, NON_ALPHANUMERIC),
        utf8_percent_encode(key, NON_ALPHANUMERIC)
    );
    let answer = client.call(Method::DELETE, &path, None).await?;
    if answer.status == StatusCode::NOT_FOUND {
        bail!("{}", error_text(&answer));
    }
    expect(answer, StatusCode::NO_CONTENT)?;
    println!("lifted the ban of {key} in {jail}");
    Ok(())
}

/// The answer if it has `status`, else an error with the API's message.
fn expect(answer: AdminAnswer, status: StatusCode) -> anyhow::Result<AdminAnswer> {
    if answer.status == status {
        return Ok(answer);
    }
    bail!(
        "admin API answered {}: {}",
        answer.status,
        error_text(&answer)
    )
}

/// The `error` of a JSON answer, or its body.
fn error_text(answer: &AdminAnswer) -> String {
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_owned())
}

fn remaining(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// The bans as an aligned table (or a line saying there are none).
fn table(bans: &[BanJson]) -> String {
    if bans.is_empty() {
        return "no active bans\n".to_owned();
    }
    let header = [
        "JAIL",
        "KEY",
        "EXPIRES",
        "REMAINING",
        "OFFENCES",
        "FAILURES",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = bans
        .iter()
        .map(|b| {
            [
                b.jail.clone(),
                b.key.clone(),
                b.expires.clone(),
                remaining(b.remaining_seconds),
                b.offences.to_string(),
                b.failures.to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned() {
        let ban = BanJson {
            jail: "ssh".into(),
            key: "192.0.2.1".into(),
            since: "2026-12-07T10:00:00Z".into(),
            expires: "2026-12-07T11:00:00Z".into(),
            since_unix_ms: 0,
            expires_unix_ms: 3_600_000,
            failures: 5,
            offences: 2,
            remaining_seconds: 3_599,
        };
        assert_eq!(
            table(&[ban]),
            "JAIL  KEY        EXPIRES               REMAINING  OFFENCES  FAILURES\n\
             ssh   192.0.2.1  2026-12-07T11:00:00Z  59m 59s    2         5\n"
        );
        assert_eq!(table(&[]), "no active bans\n");
    }
}
