//! What commands print: aligned tables and key/value blocks for people, JSON and YAML for
//! scripts.

use std::io::Write as _;

use serde_json::Value;

use crate::error::{Failure, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Rows under a header, each column as wide as its widest cell, two spaces apart.
#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; an empty cell shows as `-`.
    pub fn row(&mut self, cells: Vec<String>) {
        let cells = cells
            .into_iter()
            .map(|c| if c.is_empty() { "-".to_string() } else { c })
            .collect();
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if i + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `KEY:  value` lines, the values aligned.
pub fn details(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in pairs {
        let value = if value.is_empty() { "-" } else { value };
        let label = format!("{key}:");
        out.push_str(&format!("{label:<key_width$}  {value}\n"));
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Prints a value as JSON or YAML.
pub fn print_data(format: Format, value: &Value) -> Result<()> {
    let text = match format {
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| Failure::other(e.to_string()))?,
        Format::Json | Format::Table => {
            let mut s = serde_json::to_string_pretty(value).expect("a JSON value serializes");
            s.push('\n');
            s
        }
    };
    print(&text);
    Ok(())
}

/// Writes to stdout; a closed pipe (`weft ... | head`) ends the program quietly.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// A JSON string or number as a cell; `null` and missing as empty.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_lines_end_clean() {
        let mut t = Table::new(&["NAME", "STATE", "IP"]);
        t.row(vec!["web".into(), "running".into(), "10.100.0.1".into()]);
        t.row(vec!["database-1".into(), "stopped".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME        STATE    IP\n\
             web         running  10.100.0.1\n\
             database-1  stopped  -\n"
        );
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(Table::new(&["NAME", "STATE"]).render(), "NAME  STATE\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["é".into(), "x".into()]);
        assert_eq!(t.render(), "A  B\né  x\n");
    }

    #[test]
    fn details_align() {
        assert_eq!(
            details(&[("Name", "web".into()), ("Private IP", String::new())]),
            "Name:        web\nPrivate IP:  -\n"
        );
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!("a")), "a");
        assert_eq!(cell(&json!(128)), "128");
        assert_eq!(cell(&json!(true)), "yes");
    }
}
