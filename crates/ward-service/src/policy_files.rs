//! Policy files in: a policy set's YAML files parsed and compiled together, every problem of every
//! file reported at once and located by file, line and column.

use ward_domain::policy::{Policy, PolicySpec};
use ward_proto::ApplyPoliciesRequest;

/// Most files in one apply.
pub const MAX_FILES: usize = 500;
/// Largest policy file.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Where `needle` first appears in `text`, as 1-based (line, column).
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    let needle = needle.lines().next()?.trim();
    if needle.is_empty() {
        return None;
    }
    let offset = text.find(needle)?;
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, column))
}

/// The text a compile problem is about, to find its line in the file.
fn problem_text<'a>(spec: &'a PolicySpec, location: &str) -> Option<&'a str> {
    if location == "scope" {
        return Some(&spec.scope);
    }
    if location == "name" {
        return Some(&spec.name);
    }
    let rest = location.strip_prefix("checks[")?;
    let (index, field) = rest.split_once("].")?;
    let check = spec.checks.get(index.parse::<usize>().ok()?)?;
    match field {
        "expr" => Some(&check.expr),
        "id" => Some(&check.id),
        _ => None,
    }
}

/// Parses and compiles every file; all problems of all files are reported together, each as
/// `FILE:LINE:COLUMN: where: what` (line and column when they are known).
pub fn compile_files(request: &ApplyPoliciesRequest) -> Result<Vec<(Policy, String)>, Vec<String>> {
    let mut problems = Vec::new();
    let mut compiled: Vec<(Policy, String)> = Vec::new();
    if request.files.len() > MAX_FILES {
        return Err(vec![format!("at most {MAX_FILES} policy files at once")]);
    }
    for file in &request.files {
        let path: String = file.path.chars().filter(|c| !c.is_control()).take(300).collect();
        if file.text.len() > MAX_FILE_BYTES {
            problems.push(format!("{path}: larger than {MAX_FILE_BYTES} bytes"));
            continue;
        }
        let spec: PolicySpec = match yaml_serde::from_str(&file.text) {
            Ok(spec) => spec,
            Err(err) => {
                let message = err.to_string();
                problems.push(match err.location() {
                    Some(at) => format!("{path}:{}:{}: {message}", at.line(), at.column()),
                    None => format!("{path}: {message}"),
                });
                continue;
            }
        };
        match Policy::compile(spec.clone()) {
            Ok(policy) => {
                if compiled.iter().any(|(p, _)| p.name() == policy.name()) {
                    problems.push(format!(
                        "{path}: policy `{}` is defined in two files",
                        policy.name()
                    ));
                    continue;
                }
                compiled.push((policy, file.text.clone()));
            }
            Err(found) => {
                for problem in found {
                    let at = problem_text(&spec, &problem.location).and_then(|t| locate(&file.text, t));
                    problems.push(match at {
                        Some((line, column)) => format!("{path}:{line}:{column}: {problem}"),
                        None => format!("{path}: {problem}"),
                    });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use ward_domain::policy::CheckStatus;
    use ward_proto::PolicyFile;

    use super::*;

    fn request(files: &[(&str, &str)]) -> ApplyPoliciesRequest {
        ApplyPoliciesRequest {
            files: files
                .iter()
                .map(|(path, text)| PolicyFile {
                    path: (*path).into(),
                    text: (*text).into(),
                })
                .collect(),
            dry_run: true,
            prune: false,
        }
    }

    fn baseline() -> Vec<(Policy, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/baseline");
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        files.sort();
        let borrowed: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        compile_files(&request(&borrowed)).unwrap_or_else(|problems| panic!("{problems:#?}"))
    }

    #[test]
    fn the_shipped_baseline_compiles_and_means_what_it_says() {
        let policies = baseline();
        assert_eq!(policies.len(), 6);
        let get = |name: &str| &policies.iter().find(|(p, _)| p.name() == name).unwrap().0;
        let usb = get("phi-no-usb-storage");
        let device = |usb: serde_json::Value, drift: serde_json::Value| {
            json!({"phi": true, "class": "workstation",
                   "facts": {"usb_storage": usb, "settings": {"digest": "x", "drift": drift}}})
        };
        assert_eq!(
            usb.evaluate(&device(json!([]), json!([]))),
            vec![CheckStatus::Pass, CheckStatus::Pass]
        );
        assert_eq!(
            usb.evaluate(&device(
                json!([{"bus_id": "1-1"}]),
                json!(["usb_storage_blocked"])
            )),
            vec![CheckStatus::Fail, CheckStatus::Fail]
        );
        let unknown = json!({"phi": true, "class": "workstation", "facts": {}});
        assert_eq!(
            usb.evaluate(&unknown),
            vec![CheckStatus::Unknown, CheckStatus::Unknown]
        );
        let os = get("os-agent-floor");
        let host = |id: &str, version: &str| json!({"class": "workstation", "facts": {"agent_version": "0.1.0", "os": {"id": id, "version_id": version}}});
        assert_eq!(os.evaluate(&host("ubuntu", "20.04"))[0], CheckStatus::Fail);
        assert_eq!(os.evaluate(&host("ubuntu", "24.04"))[0], CheckStatus::Pass);
        assert_eq!(os.evaluate(&host("debian", "12"))[0], CheckStatus::Pass);
        assert_eq!(os.evaluate(&host("debian", "11"))[0], CheckStatus::Fail);
        assert_eq!(os.evaluate(&host("fedora", "40"))[0], CheckStatus::Pass);
    }

    #[test]
    fn yaml_errors_carry_file_line_and_column() {
        let problems = compile_files(&request(&[(
            "p/bad.yaml",
            "name: a\nscope: 'phi = true'\nchecks:\n  - id: x\n    expr: 'phi = true'\n    colour: red\n",
        )]))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("p/bad.yaml:6:5: "), "{}", problems[0]);
        assert!(problems[0].contains("unknown field `colour`"), "{}", problems[0]);

        let problems = compile_files(&request(&[("p/syntax.yaml", "name: [unclosed\n")])).unwrap_err();
        assert!(problems[0].starts_with("p/syntax.yaml:"), "{}", problems[0]);
    }

    #[test]
    fn expression_errors_point_at_their_line() {
        let text = "name: enc\nscope: 'phi = true'\nchecks:\n  - id: root\n    expr: 'facts.disk.encrypted = true'\n  - id: fw\n    expr: 'facts.firewall.active = \"yes\"'\n";
        let problems = compile_files(&request(&[("enc.yaml", text)])).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("enc.yaml:5:12: checks[0].expr: unknown field `facts.disk.encrypted`"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1]
                .starts_with("enc.yaml:7:12: checks[1].expr: `facts.firewall.active` is true or false"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn duplicate_names_type_errors_and_hostile_paths() {
        let one = "name: a\nscope: 'phi = true'\nchecks:\n  - id: x\n    expr: 'phi = true'\n";
        let problems = compile_files(&request(&[("one.yaml", one), ("two.yaml", one)])).unwrap_err();
        assert_eq!(problems, vec!["two.yaml: policy `a` is defined in two files"]);
        let wrong_type = "name: a\nscope: 'phi = true'\nchecks: 5\n";
        let problems = compile_files(&request(&[("\u{1b}[31mred.yaml", wrong_type)])).unwrap_err();
        assert!(
            problems[0].starts_with("[31mred.yaml:3:"),
            "control characters dropped: {}",
            problems[0]
        );
        assert!(problems[0].contains("invalid type"), "{}", problems[0]);
        let huge = "#".repeat(MAX_FILE_BYTES + 1);
        let problems = compile_files(&request(&[("huge.yaml", &huge)])).unwrap_err();
        assert!(problems[0].contains("larger than"), "{}", problems[0]);
    }
}
