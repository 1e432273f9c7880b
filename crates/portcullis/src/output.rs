//! The lines the process prints on standard output, for people and for
//! scripts: the listening address and the one-time bootstrap password.
//! Under `--log-format json` each is one JSON object, like every log line.

use serde_json::{Value, json};

use crate::cli::LogFormat;

/// Prints `message` (with `fields` in JSON) as one line on stdout.
pub fn announce(format: LogFormat, message: &str, fields: Value) {
    match format {
        LogFormat::Text => println!("{message}"),
        LogFormat::Json => {
            let mut line = json!({ "level": "INFO", "target": "portcullis", "message": message });
            if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
                line.extend(fields);
            }
            println!("{line}");
        }
    }
}
