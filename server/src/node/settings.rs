//! Layered settings of the server programs (`nadi standalone`, `controller`, `segment-store`).
//!
//! Each setting is declared once, as a field of its program's settings struct in
//! [`super::config`]: the field's `#[arg]` gives the flag, the `NADI_…` environment variable,
//! the default and the value parser, its doc comment the documentation (`--help` and the
//! table in docs/operations.md), and its TOML key is the flag's long name (serde prints it
//! under the same kebab-case name). Values are layered
//!
//! ```text
//!   default  <  --config FILE (TOML)  <  NADI_… environment variable  <  --flag
//! ```
//!
//! clap parses flags, environment and defaults, and [`ArgMatches::value_source`] tells which
//! values were explicit. [`load`] then reads the file: every key must be the long name of one
//! of the program's flags (else an error naming the key), and every value must pass that
//! flag's own value parser (else an error naming the key, the file and why). Finally clap
//! parses the program's struct once more from the explicit values plus the file's values for
//! the rest, so a file value goes through exactly the parser, range check and default a flag
//! goes through, and no setting is merged by hand.
//!
//! Owns: [`ConfigSource`] (the loader's own flags `--config` and `--print-config`, not
//! settings), [`load`], [`Loaded`] (with its `--print-config` rendering), [`name_env_source`]
//! (says which `NADI_…` variable a bad value came from), [`settings_table`] (the docs table),
//! and the value types [`Size`], [`Dur`] and [`DurList`]. Calls: clap, toml. Called by: the `nadi` binary's `main`;
//! [`super::config`] uses the value types and the tests there check the docs table.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use serde::{Serialize, Serializer};

/// The flags that say where settings come from. Every program flattens this in; they are not
/// settings themselves, so they are not TOML keys and are not printed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigSource {
    /// A TOML file with any of this program's settings, keyed by the flag names without the
    /// dashes (`data-dir = "/var/lib/nadi"`). An unknown key is an error.
    #[arg(long, env = "NADI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the merged settings as a TOML config file (each with where its value came from)
    /// and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The setting's declared default.
    Default,
    /// The `--config` file.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// The command line.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// A program's settings after layering, and where each came from.
#[derive(Debug)]
pub struct Loaded<S> {
    /// The merged settings.
    pub settings: S,
    /// The loader's own flags, as given.
    pub config: ConfigSource,
    /// Program name, for messages.
    program: &'static str,
    /// Every setting's TOML key and source (`None`: unset, no default), in flag order.
    sources: Vec<(String, Option<Source>)>,
}

/// The arguments of `S` that are settings: every flag but the loader's own.
fn setting_args(spec: &Command) -> impl Iterator<Item = &Arg> {
    let own = own_ids();
    spec.get_arguments().filter(move |a| a.get_long().is_some() && !own.iter().any(|id| id == a.get_id().as_str()))
}

/// Ids of [`ConfigSource`]'s flags.
fn own_ids() -> Vec<String> {
    ConfigSource::augment_args(Command::new("nadi")).get_arguments().map(|a| a.get_id().to_string()).collect()
}

/// The settings of `program` from `matches` (clap's parse of its flags, environment and
/// defaults) and the `--config` file they name, layered default < file < env < flag.
pub fn load<S>(program: &'static str, matches: &ArgMatches) -> anyhow::Result<Loaded<S>>
where
    S: Args + FromArgMatches + Serialize,
{
    let spec = S::augment_args(Command::new(program));
    let config = ConfigSource::from_arg_matches(matches).map_err(|e| anyhow!(clap_message(&e)))?;
    let mut from_file: BTreeMap<String, String> = BTreeMap::new();
    if let Some(path) = &config.config {
        for (key, value) in read_table(path)? {
            let Some(arg) = setting_args(&spec).find(|a| a.get_long() == Some(key.as_str())) else {
                let known: Vec<_> = setting_args(&spec).filter_map(Arg::get_long).collect();
                return Err(anyhow!(
                    "config file {}: unknown key `{key}` (nadi {program} takes: {})",
                    path.display(),
                    known.join(", ")
                ));
            };
            let text = check_file_value(program, arg, &value)
                .map_err(|e| anyhow!("config file {}: key `{key}`: {e}", path.display()))?;
            from_file.insert(key, text);
        }
    }
    // The explicit values (command line, environment) as they were given, the file's values
    // where there is none; what is left takes its default when parsed again below.
    let mut argv: Vec<OsString> = Vec::new();
    let mut sources = Vec::new();
    let own = own_ids();
    for arg in spec.get_arguments() {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else { continue };
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Some(Source::Flag),
            Some(ValueSource::EnvVariable) => {
                Some(Source::Env(arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()))
            }
            _ => None,
        };
        let source = match source {
            Some(source) => {
                for raw in matches.get_raw(id).into_iter().flatten() {
                    push_value(&mut argv, arg, long, raw.to_owned());
                }
                Some(source)
            }
            None => match (&config.config, from_file.get(long)) {
                (Some(path), Some(text)) => {
                    push_value(&mut argv, arg, long, text.into());
                    Some(Source::File(path.clone()))
                }
                _ if arg.get_default_values().is_empty() => None,
                _ => Some(Source::Default),
            },
        };
        if !own.iter().any(|o| o == id) {
            sources.push((long.to_owned(), source));
        }
    }
    // No environment this time: every value the environment gave is in `argv` already.
    let again = spec.no_binary_name(true).mut_args(|a| a.env(None::<&'static str>));
    let matches = again.try_get_matches_from(argv).map_err(|e| anyhow!(clap_message(&e)))?;
    let settings = S::from_arg_matches(&matches).map_err(|e| anyhow!(clap_message(&e)))?;
    Ok(Loaded { settings, config, program, sources })
}

/// clap's error for a bad value, with a tip naming the environment variable the value came
/// from (clap names only the flag). `cmd` is the whole command line, `argv` what was given.
pub fn name_env_source(mut err: clap::Error, cmd: &Command, argv: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(err.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return err;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else { return err };
    let Some(long) = arg.split_whitespace().next().and_then(|a| a.strip_prefix("--")).map(str::to_owned) else {
        return err;
    };
    let flag = format!("--{long}");
    let given = argv.iter().filter_map(|a| a.to_str()).any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let mut stack = vec![cmd];
    let mut env = None;
    while let Some(c) = stack.pop() {
        let found = c.get_arguments().filter(|a| a.get_long() == Some(long.as_str())).filter_map(Arg::get_env);
        env = env.or(found.into_iter().find(|e| std::env::var_os(e).is_some()));
        stack.extend(c.get_subcommands());
    }
    if let (false, Some(env)) = (given, env) {
        let tip = format!("the value came from environment variable {}", env.to_string_lossy());
        err.insert(ContextKind::Suggested, ContextValue::StyledStrs(vec![tip.into()]));
    }
    err
}

/// Appends `--long=value` (or, for a flag without a value, `--long` if `value` is true).
fn push_value(argv: &mut Vec<OsString>, arg: &Arg, long: &str, value: OsString) {
    if arg.get_action().takes_values() {
        let mut a = OsString::from(format!("--{long}="));
        a.push(value);
        argv.push(a);
    } else if value == "true" {
        argv.push(format!("--{long}").into());
    }
}

/// A file value as the text its flag would be given, checked by the flag's own value parser.
fn check_file_value(program: &'static str, arg: &Arg, value: &toml::Value) -> Result<String, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => return Err(format!("{other} is not a string, number or boolean")),
    };
    let long = arg.get_long().unwrap_or_default();
    let argv: Vec<String> = if arg.get_action().takes_values() {
        vec![format!("--{long}={text}")]
    } else if text == "true" || text == "false" {
        vec![]
    } else {
        return Err(format!("{text:?} is not true or false"));
    };
    let one = Command::new(program).no_binary_name(true).arg(arg.clone().env(None::<&'static str>).required(false));
    one.try_get_matches_from(argv).map_err(|e| clap_message(&e))?;
    Ok(text)
}

/// A clap error as one line, without clap's `error: ` prefix and usage hints.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow!("config file {}: {}", path.display(), e.to_string().trim().replace('\n', " ")))
}

impl<S: Serialize> Loaded<S> {
    /// The merged settings as a TOML config file, in flag order, each with where its value
    /// came from; settings without a value are listed as comments. Read back with `--config`
    /// it gives the same settings.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let table = toml::Table::try_from(&self.settings).context("printing the settings")?;
        let mut out = format!(
            "# nadi {}: merged settings (default < --config file < NADI_* environment < flags)\n",
            self.program
        );
        for (key, source) in &self.sources {
            match (table.get(key), source) {
                (Some(value), Some(source)) => writeln!(out, "{key} = {value}  # {source}")?,
                (Some(value), None) => writeln!(out, "{key} = {value}")?,
                (None, _) => writeln!(out, "# {key} is not set")?,
            }
        }
        if let Some(stray) = table.keys().find(|k| !self.sources.iter().any(|(key, _)| key == *k)) {
            // A serde name that is not a flag name: a bug in a settings struct.
            anyhow::bail!("setting `{stray}` has no flag of that name");
        }
        Ok(out)
    }
}

/// The markdown table of the settings of `programs` (name, command), one row per distinct
/// setting (same flag, environment variable, default and doc), saying which programs take it.
pub fn settings_table(programs: &[(&str, Command)]) -> String {
    let own = own_ids();
    let mut rows: Vec<([String; 5], Vec<&str>)> = Vec::new();
    for (name, cmd) in programs {
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let values: Vec<_> = arg.get_value_names().unwrap_or_default().iter().map(|v| v.to_string()).collect();
            let flag = match arg.get_action().takes_values() {
                true => format!("`--{long} {}`", values.join(" ")),
                false => format!("`--{long}`"),
            };
            let env = arg.get_env().map_or("—".to_owned(), |e| format!("`{}`", e.to_string_lossy()));
            let key =
                if own.iter().any(|o| o == arg.get_id().as_str()) { "—".to_owned() } else { format!("`{long}`") };
            let defaults: Vec<_> = arg.get_default_values().iter().map(|d| d.to_string_lossy()).collect();
            let default = match defaults.is_empty() || !arg.get_action().takes_values() {
                true => "—".to_owned(),
                false => format!("`{}`", defaults.join(",")),
            };
            let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|");
            let row = [flag, env, key, default, help];
            match rows.iter_mut().find(|(r, _)| *r == row) {
                Some((_, progs)) => progs.push(name),
                None => rows.push((row, vec![name])),
            }
        }
    }
    let mut out = String::from("| flag | env | TOML key | default | programs | meaning |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for ([flag, env, key, default, help], progs) in rows {
        let progs = if progs.len() == programs.len() { "all".to_owned() } else { progs.join(", ") };
        let _ = writeln!(out, "| {flag} | {env} | {key} | {default} | {progs} | {help} |");
    }
    out
}

/// A size in bytes, written like `64MiB`, `1GiB` or `1048576` (`MB` means 10^6 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let v: bytesize::ByteSize =
            s.trim().parse().map_err(|e| format!("{s:?} is not a size ({e}); use e.g. 64MiB"))?;
        Ok(Size(v.as_u64()))
    }
}

impl fmt::Display for Size {
    /// Exactly, in the largest binary unit that divides it (so it parses back to the same).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// A duration, written like `30s`, `500ms`, `5m` or `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 30s"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// Durations separated by commas, like `2m,5m,10m,20m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurList(pub Vec<Duration>);

impl FromStr for DurList {
    type Err = String;
    fn from_str(s: &str) -> Result<DurList, String> {
        s.split(',').map(|d| d.parse::<Dur>().map(|d| d.0)).collect::<Result<_, _>>().map(DurList)
    }
}

impl fmt::Display for DurList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self.0.iter().map(|d| Dur(*d).to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// Serializes as the text its `FromStr` reads, so printed settings read back the same.
macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(Size, Dur, DurList);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_they_parse() {
        for s in ["64MiB", "1GiB", "3KiB", "1000", "0", "5TiB"] {
            assert_eq!(s.parse::<Size>().unwrap().to_string(), s);
        }
        assert_eq!("20MB".parse::<Size>().unwrap(), Size(20_000_000));
        assert!("lots".parse::<Size>().unwrap_err().contains("is not a size"));
        for s in ["30s", "500ms", "10m", "1h 30m"] {
            assert_eq!(s.parse::<Dur>().unwrap().to_string(), s);
        }
        assert_eq!("2m,5m".parse::<DurList>().unwrap().to_string(), "2m,5m");
        assert!("1s,soon".parse::<DurList>().is_err());
    }
}
