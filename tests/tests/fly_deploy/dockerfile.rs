//! Reads `fly/Dockerfile` (how the Fly image is built, outside the request
//! path) into stages and instructions, enough to check what it copies and
//! which build commands it runs — the lint that stands in for hadolint here.

use std::collections::BTreeMap;

/// One `COPY` instruction.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The `--from=` stage, if any.
    pub from: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

/// One build stage: its name and instructions.
#[derive(Debug, Default)]
pub struct Stage {
    pub name: Option<String>,
    pub image: String,
    pub copies: Vec<Copy>,
    /// `RUN` commands with their `--mount=` options removed, whitespace collapsed.
    pub runs: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub expose: Vec<u16>,
}

#[derive(Debug, Default)]
pub struct Dockerfile {
    pub args: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn parse(text: &str) -> Result<Dockerfile, String> {
        let mut file = Dockerfile::default();
        for (line_no, line) in logical_lines(text) {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let rest = rest.trim();
            let at = |msg: &str| format!("fly/Dockerfile:{line_no}: {msg}: {line}");
            match keyword.to_ascii_uppercase().as_str() {
                "ARG" => {
                    let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
                    if file.stages.is_empty() {
                        file.args.insert(k.to_string(), v.to_string());
                    }
                }
                "FROM" => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let image = expand(
                        words.first().ok_or_else(|| at("FROM without an image"))?,
                        &file.args,
                    );
                    let name = match words.as_slice() {
                        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                            Some(name.to_string())
                        }
                        [_] => None,
                        _ => return Err(at("unexpected FROM form")),
                    };
                    file.stages.push(Stage {
                        name,
                        image,
                        ..Stage::default()
                    });
                }
                other => {
                    let stage = file
                        .stages
                        .last_mut()
                        .ok_or_else(|| at("instruction before FROM"))?;
                    match other {
                        "COPY" => stage.copies.push(parse_copy(rest).map_err(|e| at(&e))?),
                        "RUN" => {
                            let words: Vec<&str> = rest
                                .split_whitespace()
                                .filter(|w| !w.starts_with("--mount="))
                                .collect();
                            stage.runs.push(words.join(" "));
                        }
                        "ENV" => {
                            for pair in rest.split_whitespace() {
                                let (k, v) = pair
                                    .split_once('=')
                                    .ok_or_else(|| at("ENV without KEY=VALUE"))?;
                                stage.env.insert(k.to_string(), v.to_string());
                            }
                        }
                        "ENTRYPOINT" => {
                            let v: Vec<String> = serde_json::from_str(rest).map_err(|e| {
                                at(&format!("ENTRYPOINT is not an exec-form JSON array ({e})"))
                            })?;
                            stage.entrypoint = Some(v);
                        }
                        "EXPOSE" => {
                            for p in rest.split_whitespace() {
                                stage.expose.push(
                                    p.trim_end_matches("/tcp")
                                        .parse()
                                        .map_err(|_| at("bad EXPOSE port"))?,
                                );
                            }
                        }
                        "WORKDIR" | "USER" | "CMD" | "LABEL" => {}
                        _ => return Err(at("instruction this lint does not know")),
                    }
                }
            }
        }
        Ok(file)
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// The last stage: the image that runs.
    pub fn runtime(&self) -> &Stage {
        self.stages.last().expect("a Dockerfile has a stage")
    }
}

/// Lines joined across `\` continuations, comments and blanks dropped, with
/// the number of the line each starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (trimmed, false),
        };
        if !acc.is_empty() {
            acc.push(' ');
        }
        acc.push_str(body);
        if continues {
            current = Some((start, acc));
        } else {
            out.push((start, acc));
        }
    }
    out.extend(current);
    out
}

fn parse_copy(rest: &str) -> Result<Copy, String> {
    let mut from = None;
    let mut paths = Vec::new();
    for w in rest.split_whitespace() {
        if let Some(stage) = w.strip_prefix("--from=") {
            from = Some(stage.to_string());
        } else if w.starts_with("--chmod=") || w.starts_with("--chown=") || w == "--link" {
        } else if w.starts_with("--") {
            return Err(format!("COPY option {w} this lint does not know"));
        } else {
            paths.push(w.to_string());
        }
    }
    let dest = paths.pop().ok_or("COPY without a destination")?;
    if paths.is_empty() {
        return Err("COPY without a source".into());
    }
    Ok(Copy {
        from,
        sources: paths,
        dest,
    })
}

/// `${NAME}` replaced by the global ARG's default.
fn expand(word: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = word.to_string();
    for (k, v) in args {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// The recipe lines of a Makefile target, `$(CARGO)` read as `cargo`.
pub fn make_recipe(makefile: &str, target: &str) -> Vec<String> {
    let mut lines = makefile
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{target}:")));
    lines.next();
    lines
        .take_while(|l| l.starts_with('\t'))
        .map(|l| l.trim().replace("$(CARGO)", "cargo"))
        .collect()
}
