//! `pfgate users …`: import users from a CSV file or an old MFA Server's SDK, export them as CSV.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::store::store_for;
use super::{CliError, SdkConnectArgs};

/// `pfgate users …`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process: the size does not matter
pub enum UsersAction {
    /// Import users from a CSV file (columns: see the README), or with --from-sdk URL straight
    /// from an old MFA Server's Web Service SDK (docs/migration.md); existing users are skipped.
    Import {
        /// The CSV file (not with --from-sdk).
        #[arg(required_unless_present = "from_sdk", conflicts_with = "from_sdk")]
        file: Option<PathBuf>,
        /// Configuration naming the store (`[store] path`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Update users that already exist instead of skipping them: the columns the file has
        /// are written, the others keep their stored values (with --from-sdk: the fields that
        /// differ from the old server's).
        #[arg(long)]
        update: bool,
        /// Read the users from this PfWsSdk.asmx URL (an old MFA Server) instead of a CSV file.
        #[arg(long, value_name = "URL")]
        from_sdk: Option<String>,
        /// Write nothing, print what would change (each user and the totals).
        #[arg(long)]
        dry_run: bool,
        /// With --from-sdk: record progress here and continue after the last user it names.
        #[arg(long, value_name = "FILE", requires = "from_sdk")]
        since_checkpoint: Option<PathBuf>,
        /// With --from-sdk: rows asked for per FindUsers call (slices are split until complete).
        #[arg(long, value_name = "N", default_value_t = 500, requires = "from_sdk")]
        page_size: u32,
        /// With --from-sdk: stop after N users (continue later with --since-checkpoint).
        #[arg(long, value_name = "N", requires = "from_sdk")]
        max_users: Option<usize>,
        /// With --from-sdk: the CSV of problems (users not imported, PINs and OATH secrets not
        /// migrated, differences).
        #[arg(
            long,
            value_name = "FILE",
            default_value = "pfgate-import-problems.csv"
        )]
        problems: PathBuf,
        #[command(flatten)]
        connect: SdkConnectArgs,
    },
    /// Export users as CSV (without PINs, OATH secrets or static tokens).
    Export {
        /// Configuration naming the store.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs `pfgate users …`.
pub(super) async fn run(action: UsersAction) -> Result<ExitCode, CliError> {
    match action {
        UsersAction::Import {
            from_sdk: Some(url),
            config,
            update,
            dry_run,
            since_checkpoint,
            page_size,
            max_users,
            problems,
            connect,
            ..
        } => {
            let store = store_for(&config).await?;
            let opts = crate::site::users_import::ImportOptions {
                page_size,
                dry_run,
                update,
                checkpoint: since_checkpoint,
                problems,
                max_users,
            };
            Ok(
                crate::site::users_import::command(connect.settings(url), store.as_ref(), &opts)
                    .await,
            )
        }
        UsersAction::Import {
            file,
            config,
            update,
            dry_run,
            ..
        } => {
            let Some(file) = file else {
                return Err(CliError::failed(
                    "users import needs a CSV file or --from-sdk URL",
                ));
            };
            import_csv(&file, &config, update, dry_run).await
        }
        UsersAction::Export { config, output } => export(&config, output.as_deref()).await,
    }
}

/// `users import FILE`: exit 1 when rows were refused (each named on standard error by line).
async fn import_csv(
    file: &Path,
    config: &Path,
    update: bool,
    dry_run: bool,
) -> Result<ExitCode, CliError> {
    let store = store_for(config).await?;
    let input = std::fs::File::open(file)
        .map_err(|e| CliError::failed(format!("cannot read {}: {e}", file.display())))?;
    let (rows, row_errors) =
        crate::site::users_csv::read(input).map_err(|e| CliError::rejected(file.display(), e))?;
    if dry_run {
        return csv_dry_run(store.as_ref(), file, &rows, &row_errors, update).await;
    }
    let report = crate::site::users_csv::import(store.as_ref(), rows, update)
        .await
        .map_err(|e| CliError::failed(format!("import stopped: {e}")))?;
    // Rows the file got wrong, then rows the store refused (an external id another user
    // holds), in line order.
    let mut refused: Vec<_> = row_errors.iter().chain(&report.errors).collect();
    refused.sort_by_key(|e| e.line);
    for e in &refused {
        eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
    }
    println!(
        "imported: {} added, {} updated, {} already present, {} rows refused",
        report.added,
        report.updated,
        report.skipped,
        refused.len()
    );
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `users import FILE --dry-run`: prints what the import would do and writes nothing (exit 1 when
/// rows would be refused, as the import itself).
async fn csv_dry_run(
    store: &dyn crate::store::Store,
    file: &Path,
    rows: &[crate::site::users_csv::ImportRow],
    row_errors: &[crate::site::users_csv::RowError],
    update: bool,
) -> Result<ExitCode, CliError> {
    use crate::site::users_csv::RowAction;
    let plan = crate::site::users_csv::preview(store, rows, update)
        .await
        .map_err(|e| CliError::failed(format!("dry run stopped: {e}")))?;
    for e in row_errors {
        eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
    }
    let (mut added, mut updated, mut skipped) = (0, 0, 0);
    for (line, user, action) in &plan {
        let (verb, count) = match action {
            RowAction::Add => ("would add", &mut added),
            RowAction::Update => ("would update", &mut updated),
            RowAction::Skip => ("already present", &mut skipped),
        };
        *count += 1;
        println!("{}:{line}: {verb} {user}", file.display());
    }
    println!(
        "dry run, nothing written: {added} would be added, {updated} updated, {skipped} already \
         present, {} rows refused",
        row_errors.len()
    );
    Ok(if row_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `users export`: CSV on standard output or into `output`; the count on standard error.
async fn export(config: &Path, output: Option<&Path>) -> Result<ExitCode, CliError> {
    let store = store_for(config).await?;
    let result = match output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => crate::site::users_csv::export(store.as_ref(), f).await,
            Err(e) => Err(format!("cannot write {}: {e}", path.display())),
        },
        None => crate::site::users_csv::export(store.as_ref(), std::io::stdout().lock()).await,
    };
    let n = result.map_err(|e| CliError::failed(format!("export failed: {e}")))?;
    // The count is the command's result; standard output holds the CSV.
    eprintln!("exported {n} users");
    Ok(ExitCode::SUCCESS)
}
