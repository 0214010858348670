//! `petrel-bench report`: result files of `petrel-bench load` -> a markdown report with a
//! comparison table and SVG plots per workload.
//!
//! Results are grouped by `workload`, then by `label` (compared case-insensitively; the
//! table puts `petrel` and `kafka` first and divides Petrel by Kafka). If several files share
//! a workload and label, the last one on the command line wins (with a warning).

mod plots;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};

use crate::load::output::{self, LoadResult};

/// Results keyed by lower-case label, in label order.
type ByLabel = BTreeMap<String, LoadResult>;

pub fn run(out: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    ensure!(!files.is_empty(), "no result files given");
    let mut workloads: BTreeMap<String, ByLabel> = BTreeMap::new();
    for file in files {
        let result = output::read(file)?;
        let label = result.label.to_lowercase();
        let by_label = workloads.entry(result.workload.clone()).or_default();
        if by_label.insert(label.clone(), result).is_some() {
            eprintln!(
                "warning: {}: a second result for label {label:?}; using this one",
                file.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut markdown = String::from("# Petrel vs Kafka: load results\n\n");
    markdown.push_str(table::NOTES);
    for (workload, by_label) in &workloads {
        markdown.push_str(&workload_section(out, workload, by_label)?);
    }
    let path = out.join("report.md");
    std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn workload_section(out: &Path, workload: &str, by_label: &ByLabel) -> anyhow::Result<String> {
    let mut section = format!("\n## Workload `{workload}`\n\n");
    for (label, result) in by_label {
        let _ = writeln!(
            section,
            "- `{label}`: {}",
            table::describe_config(&result.config, &result.bootstrap)
        );
    }
    section.push('\n');
    section.push_str(&table::render(by_label));
    let file_stem = safe_file_stem(workload);
    let latency_file = format!("{file_stem}-latency.svg");
    let throughput_file = format!("{file_stem}-throughput.svg");
    let tail_file = format!("{file_stem}-tail.svg");
    plots::latency(&out.join(&latency_file), workload, by_label)?;
    plots::throughput(&out.join(&throughput_file), workload, by_label)?;
    plots::tail_over_time(&out.join(&tail_file), workload, by_label)?;
    let _ = write!(
        section,
        "\n![latency percentiles]({latency_file})\n\n![throughput over time]({throughput_file})\n\n\
         ![p99 latency of each second]({tail_file})\n"
    );
    Ok(section)
}

/// Workload names are free text; file names get only `[A-Za-z0-9_-]`.
fn safe_file_stem(workload: &str) -> String {
    let stem: String = workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "workload".to_string()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_become_safe_file_names() {
        assert_eq!(safe_file_stem("catch-up 1KB/zstd"), "catch-up_1KB_zstd");
        assert_eq!(safe_file_stem(""), "workload");
    }
}
