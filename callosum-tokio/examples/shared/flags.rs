//! Command-line flags of the examples: `--name value` pairs.

use std::collections::HashMap;

/// `--name value` pairs from the command line; `allowed` lists the names.
pub fn flags(allowed: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut args = std::env::args().skip(1);
    let mut flags = HashMap::new();
    while let Some(name) = args.next() {
        let key = name
            .strip_prefix("--")
            .filter(|key| allowed.contains(key))
            .ok_or_else(|| {
                format!(
                    "unknown argument {name:?}; expected one of --{}",
                    allowed.join(", --")
                )
            })?;
        let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
        flags.insert(key.to_owned(), value);
    }
    Ok(flags)
}

/// The flag's value parsed, or `default` when it is absent.
pub fn parsed<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match flags.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|error| format!("--{name} {text:?}: {error}")),
    }
}
