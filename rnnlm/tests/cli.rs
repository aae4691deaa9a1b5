//! The `generate`, `score`, `export` and `plot` subcommands, run as the
//! built binary on a tiny checkpoint.

mod tiny_model;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rnnlm::api::LanguageModel;
use rnnlm::checkpoint;
use safetensors::SafeTensors;

const SENTENCES: &str = "the cat sat on the mat\n\na zebra ran on a mat\r\ndog\n";

fn rnnlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(args)
        .output()
        .expect("rnnlm runs")
}

fn rnnlm_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rnnlm starts");
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    // A command that fails before reading its input (a missing checkpoint)
    // closes the pipe first, so a broken pipe is part of that case.
    if let Err(error) = written {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    }
    child.wait_with_output().expect("rnnlm runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "rnnlm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Asserts a clean failure: exit code 1, one `error:` message, no panic.
fn assert_fails_with(output: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn score_matches_api_per_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let checkpoint = tiny_model::save_checkpoint(dir.path(), true);
    let input = dir.path().join("sentences.txt");
    std::fs::write(&input, SENTENCES).expect("input written");

    let from_file = stdout(&rnnlm(&[
        "score",
        "--checkpoint",
        path_str(&checkpoint),
        "--batch",
        "2",
        path_str(&input),
    ]));
    let from_stdin = stdout(&rnnlm_with_stdin(
        &["score", "--checkpoint", path_str(&checkpoint), "-"],
        SENTENCES,
    ));
    assert_eq!(from_file, from_stdin);

    let mut lm = LanguageModel::load(&checkpoint).expect("checkpoint loads");
    let lines: Vec<&str> = SENTENCES.lines().collect();
    let expected = lm.score_sentences(&lines).expect("scores");

    let rows: Vec<Vec<&str>> = from_file.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows[0],
        ["line", "log10_prob", "ln_prob", "tokens", "perplexity"]
    );
    assert_eq!(rows.len(), lines.len() + 2, "{from_file}");
    let number = |text: &str| text.parse::<f64>().expect("numeric column");
    for (index, score) in expected.iter().enumerate() {
        let row = &rows[index + 1];
        assert_eq!(row[0], (index + 1).to_string());
        // Printed with 6 decimals (4 for perplexity): half a unit of the last.
        assert!(
            (number(row[1]) - score.log10_prob()).abs() <= 5e-7,
            "{row:?}"
        );
        assert!((number(row[2]) - score.log_prob).abs() <= 5e-7, "{row:?}");
        assert_eq!(row[3], score.tokens.to_string());
        assert!((number(row[4]) - score.perplexity).abs() <= 5e-5, "{row:?}");
    }
    assert_eq!(rows[2][3], "1", "an empty line is <eos> alone");
    assert_eq!(rows[3][3], "7", "the CR of a CRLF line is whitespace");

    let total = rows.last().expect("total row");
    let log_prob: f64 = expected.iter().map(|s| s.log_prob).sum();
    let tokens: usize = expected.iter().map(|s| s.tokens).sum();
    assert_eq!(total[0], "total");
    assert_eq!(total[3], tokens.to_string());
    assert!((number(total[2]) - log_prob).abs() <= 5e-7);
    let perplexity = (-log_prob / tokens as f64).exp();
    assert!((number(total[4]) - perplexity).abs() <= 5e-5);
}

#[test]
fn score_without_unk_names_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let words: Vec<String> = tiny_model::WORDS
        .iter()
        .map(|&word| if word == "<unk>" { "rug" } else { word })
        .map(String::from)
        .collect();
    let vocab = rnnlm::corpus::Vocab::from_words(words).expect("valid vocabulary");
    let path = dir.path().join("no-unk.safetensors");
    checkpoint::save(&path, &tiny_model::model(true), &vocab, &HashMap::new())
        .expect("checkpoint saves");

    let output = rnnlm_with_stdin(&["score", "--checkpoint", path_str(&path)], SENTENCES);
    assert_fails_with(&output, &["<stdin>: line 3: word \"zebra\"", "<unk>"]);
}

#[test]
fn score_rejects_empty_input() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let checkpoint = tiny_model::save_checkpoint(dir.path(), true);
    let output = rnnlm_with_stdin(&["score", "--checkpoint", path_str(&checkpoint)], "");
    assert_fails_with(&output, &["<stdin> is empty"]);
}

#[test]
fn generate_prints_prompt_and_api_text() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let checkpoint = tiny_model::save_checkpoint(dir.path(), false);
    let mut lm = LanguageModel::load(&checkpoint).expect("checkpoint loads");
    let run = |temperature: &str, seed: &str| {
        stdout(&rnnlm(&[
            "generate",
            "--checkpoint",
            path_str(&checkpoint),
            "--prompt",
            " the  cat ",
            "--words",
            "12",
            "--temperature",
            temperature,
            "--seed",
            seed,
        ]))
    };

    for (temperature, seed) in [("0", "1"), ("1.5", "8")] {
        let text = lm
            .generate(
                "the cat",
                12,
                temperature.parse().expect("number"),
                seed.parse().expect("number"),
            )
            .expect("generates");
        let expected = if text.starts_with('\n') {
            format!("the cat{text}")
        } else {
            format!("the cat {text}")
        };
        let expected = if expected.ends_with('\n') {
            expected
        } else {
            expected + "\n"
        };
        assert_eq!(
            run(temperature, seed),
            expected,
            "temperature {temperature}"
        );
    }
    assert_eq!(run("1.5", "3"), run("1.5", "3"));
}

#[test]
fn generate_rejects_negative_temperature() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let checkpoint = tiny_model::save_checkpoint(dir.path(), true);
    for value in [["--temperature=-1"].as_slice(), &["--temperature", "-1"]] {
        let mut args = vec!["generate", "--checkpoint", path_str(&checkpoint)];
        args.extend_from_slice(value);
        assert_fails_with(&rnnlm(&args), &["invalid temperature -1"]);
    }
}

#[test]
fn commands_report_missing_checkpoint() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("absent.safetensors");
    let out = dir.path().join("export");
    for args in [
        vec!["generate", "--checkpoint", path_str(&missing)],
        vec!["score", "--checkpoint", path_str(&missing), "-"],
        vec![
            "export",
            "--checkpoint",
            path_str(&missing),
            "--out",
            path_str(&out),
        ],
    ] {
        let output = rnnlm_with_stdin(&args, "the cat\n");
        assert_fails_with(
            &output,
            &[
                "cannot read checkpoint",
                "absent.safetensors",
                "--checkpoint",
            ],
        );
    }
    assert!(!out.exists(), "a failed export creates nothing");
}

/// Reads every tensor of a safetensors file as f32 values with its shape.
fn read_tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("tensor file reads");
    let tensors = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

#[test]
fn export_round_trips() {
    for tied in [true, false] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let source = tiny_model::save_checkpoint(dir.path(), tied);
        let out = dir.path().join("export");
        stdout(&rnnlm(&[
            "export",
            "--checkpoint",
            path_str(&source),
            "--out",
            path_str(&out),
        ]));

        // Tensors only: the rnnlm metadata stays behind.
        let model_path = out.join("model.safetensors");
        let bytes = std::fs::read(&model_path).expect("model.safetensors written");
        let (_, header) = SafeTensors::read_metadata(&bytes).expect("valid safetensors");
        assert_eq!(header.metadata(), &None);

        // Same names, shapes and values as the checkpoint, decoder included.
        let exported = read_tensors(&model_path);
        let original = read_tensors(&source);
        let mut names: Vec<&String> = exported.keys().collect();
        names.sort();
        // Encoder, decoder weight and bias, and 4 tensors per layer.
        assert_eq!(names.len(), 3 + 4 * 2, "{names:?}");
        assert_eq!(exported, original);
        let (decoder_shape, decoder) = &exported["decoder.weight"];
        assert_eq!(decoder_shape, &[10, 8]);
        assert_eq!(decoder == &exported["encoder.weight"].1, tied);

        // Spot checks against the model's own buffer: weight_ih is Wx^T.
        let model = tiny_model::model(tied);
        let (shape, w_ih) = &exported["rnn.weight_ih_l1"];
        assert_eq!(shape, &[32, 8]);
        let wx = &model.params[model.layout.layers[1].wx.clone()];
        for (row, col) in [(0, 0), (5, 3), (31, 7)] {
            assert_eq!(w_ih[row * 8 + col], wx[col * 32 + row], "({row}, {col})");
        }

        let vocab = std::fs::read_to_string(out.join("vocab.txt")).expect("vocab.txt written");
        assert_eq!(vocab.lines().collect::<Vec<_>>(), tiny_model::WORDS);
        assert!(vocab.ends_with('\n'));

        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("config.json")).expect("config.json written"),
        )
        .expect("valid JSON");
        assert_eq!(config["vocab_size"], 10);
        assert_eq!(config["embedding_size"], 8);
        assert_eq!(config["hidden_size"], 8);
        assert_eq!(config["num_layers"], 2);
        assert_eq!(config["tied"], tied);
        assert_eq!(config["eos"], "<eos>");
        assert_eq!(config["checkpoint_info"]["epoch"], "3");
        assert_eq!(config["checkpoint_info"]["train_options"]["batch"], 2);

        // Back into a checkpoint: the exported tensors plus the rnnlm
        // metadata load into the same parameters.
        let tensors = SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let model_config = serde_json::json!({
            "vocab": 10, "embed": 8, "hidden": 8, "layers": 2, "tied": tied
        });
        let metadata = HashMap::from([
            ("format".to_string(), "rnnlm-v1".to_string()),
            ("config".to_string(), model_config.to_string()),
            (
                "vocab".to_string(),
                serde_json::to_string(&tiny_model::WORDS).expect("serialises"),
            ),
        ]);
        let rebuilt = dir.path().join("rebuilt.safetensors");
        safetensors::serialize_to_file(tensors.tensors(), Some(metadata), &rebuilt)
            .expect("rebuilt checkpoint written");
        let reloaded = checkpoint::load(&rebuilt).expect("rebuilt checkpoint loads");
        assert_eq!(reloaded.model.params, model.params);
    }
}

const METRICS: &str = r#"{"event":"progress","epoch":1,"step":100,"tokens_seen":70000,"tokens_per_sec":9000.0,"train_ppl":1200.0,"lr":20.0,"elapsed_secs":8.0}
{"event":"progress","epoch":1,"step":200,"tokens_seen":140000,"tokens_per_sec":9000.0,"train_ppl":700.0,"lr":20.0,"elapsed_secs":16.0}
{"event":"epoch","epoch":1,"step":200,"tokens_seen":140000,"tokens_per_sec":9000.0,"train_ppl":650.0,"valid_ppl":400.0,"lr":20.0,"elapsed_secs":17.0,"improved":true}
{"event":"progress","epoch":2,"step":300,"tokens_seen":210000,"tokens_per_sec":9000.0,"train_ppl":320.0,"lr":20.0,"elapsed_secs":25.0}
{"event":"epoch","epoch":2,"step":400,"tokens_seen":280000,"tokens_per_sec":9000.0,"train_ppl":300.0,"valid_ppl":260.0,"lr":20.0,"elapsed_secs":33.0,"improved":true}
{"event":"end","best_valid_ppl":260.0,"test_ppl":250.0}
"#;

#[test]
fn plot_writes_png() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::write(&metrics, METRICS).expect("metrics written");
    let png = dir.path().join("curve.png");
    stdout(&rnnlm(&[
        "plot",
        "--metrics",
        path_str(&metrics),
        "--out",
        path_str(&png),
    ]));

    let bytes = std::fs::read(&png).expect("PNG written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
    assert_eq!((width, height), (1024, 640));
    // With plotters 0.3.7, a blank 1024 x 640 image encodes to about 11 KB.
    // This plot, with grid, curves and text, measured about 50 KB.
    assert!(bytes.len() > 25_000, "{} bytes", bytes.len());
}

#[test]
fn plot_reports_malformed_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let metrics = dir.path().join("metrics.jsonl");
    let broken = METRICS.replacen("{\"event\":\"epoch\"", "{\"event\":\"epoch\",", 1);
    std::fs::write(&metrics, broken).expect("metrics written");
    let png = dir.path().join("curve.png");
    let output = rnnlm(&[
        "plot",
        "--metrics",
        path_str(&metrics),
        "--out",
        path_str(&png),
    ]);
    assert_fails_with(&output, &["metrics.jsonl: line 3: not valid JSON"]);
    assert!(!png.exists());

    let missing = dir.path().join("absent.jsonl");
    let output = rnnlm(&[
        "plot",
        "--metrics",
        path_str(&missing),
        "--out",
        path_str(&png),
    ]);
    assert_fails_with(&output, &["cannot read metrics file", "absent.jsonl"]);
}

#[test]
fn plot_rejects_bad_out_path() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::write(&metrics, METRICS).expect("metrics written");
    let jpeg = dir.path().join("curve.jpg");
    let output = rnnlm(&[
        "plot",
        "--metrics",
        path_str(&metrics),
        "--out",
        path_str(&jpeg),
    ]);
    assert_fails_with(&output, &["curve.jpg", "PNG only"]);
    assert!(!jpeg.exists());

    let nested = dir.path().join("absent/curve.png");
    let output = rnnlm(&[
        "plot",
        "--metrics",
        path_str(&metrics),
        "--out",
        path_str(&nested),
    ]);
    assert_fails_with(&output, &["absent", "does not exist; create it first"]);
}

#[test]
fn score_warns_about_unknown_words() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = tiny_model::save_checkpoint(dir.path(), true);
    let output = rnnlm_with_stdin(
        &["score", "--checkpoint", path_str(&path)],
        "the Cat sat\nthe cat sat on zebra\n",
    );
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2 of 8 words are not in the model's vocabulary"),
        "{stderr}"
    );
    assert!(stderr.contains("(first: \"Cat\", \"zebra\")"), "{stderr}");

    let output = rnnlm_with_stdin(&["score", "--checkpoint", path_str(&path)], "the cat sat\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("vocabulary"), "{stderr}");
}

#[test]
fn export_rejects_file_as_out() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let checkpoint = tiny_model::save_checkpoint(dir.path(), true);
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").expect("file written");
    let output = rnnlm(&[
        "export",
        "--checkpoint",
        path_str(&checkpoint),
        "--out",
        path_str(&file),
    ]);
    assert_fails_with(&output, &["notes.txt is a file", "pass a directory path"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}
