//! `weft api`: a raw request, its JSON answer printed as it came.

use std::io::Read as _;

use serde_json::Value;

use super::Ctx;
use crate::cli::ApiArgs;
use crate::error::{Failure, Result};
use crate::output::{self, Format};

/// The body of `-d`: JSON text as it is, `@FILE`, or `-` for standard input.
fn body(data: &str) -> Result<String> {
    if data == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::other(format!("cannot read standard input: {e}")))?;
        Ok(text)
    } else if let Some(file) = data.strip_prefix('@') {
        std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("cannot read -d @{file}: {e}")))
    } else {
        Ok(data.to_string())
    }
}

pub fn run(ctx: &Ctx, args: ApiArgs) -> Result<()> {
    let body = args.data.as_deref().map(body).transpose()?;
    let method = match args.method {
        Some(m) => m.to_ascii_uppercase(),
        None if body.is_some() => "POST".into(),
        None => "GET".into(),
    };
    let answer = ctx
        .client
        .send(&method, &args.path, body.as_deref(), None)?;

    match (&answer.body, ctx.format) {
        (Value::String(text), _) => {
            if !text.is_empty() {
                output::print(&format!("{}\n", text.trim_end()));
            }
        }
        (value, Format::Yaml) => output::print_data(Format::Yaml, value)?,
        (value, _) => output::print_data(Format::Json, value)?,
    }
    if answer.http >= 400 {
        return Err(answer.refusal());
    }
    Ok(())
}
