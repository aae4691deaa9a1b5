//! `rnnlm train` and `rnnlm eval` end to end: impossible settings rejected
//! before any work, resuming a run, and a short run on real PTB whose
//! checkpoint reproduces the validation perplexity printed at save time.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn rnnlm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the rnnlm binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes the three PTB files of a synthetic corpus into `dir/data`: 40
/// lines over a 20-word vocabulary.
fn write_corpus(dir: &Path) {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let text: String = (0..40)
        .map(|line| {
            let words: Vec<String> = (0..8)
                .map(|i| format!("w{}", (line * 3 + i) % 20))
                .collect();
            words.join(" ") + "\n"
        })
        .collect();
    for split in ["train", "valid", "test"] {
        std::fs::write(data.join(format!("ptb.{split}.txt")), &text).unwrap();
    }
}

/// Returns the "epoch N | ..." summary lines of a `train` run's standard
/// output, up to the learning rate.
fn epoch_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("epoch "))
        // Epoch, train ppl, valid ppl and lr; speed and time vary.
        .map(|l| l.split(" | ").take(4).collect::<Vec<_>>().join(" | "))
        .collect()
}

#[test]
fn resume_matches_uninterrupted_run() {
    let train = |dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            "data",
            "--offline",
            "--hidden",
            "12",
            "--batch",
            "4",
            "--bptt",
            "5",
            "--threads",
            "1",
            "--seed",
            "9",
            // The rate halves after every epoch, so a resume must carry it.
            "--lr-decay-after",
            "1",
            "--lr-decay",
            "2",
            "--save",
            "m.safetensors",
        ];
        args.extend_from_slice(extra);
        rnnlm(&args, dir)
    };
    let straight = tempfile::tempdir().unwrap();
    write_corpus(straight.path());
    let output = train(straight.path(), &["--epochs", "3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = epoch_lines(&output);
    assert_eq!(expected.len(), 3, "{expected:?}");

    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let first = train(dir.path(), &["--epochs", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(dir.path().join("m.resume.safetensors").exists());
    let resumed = train(dir.path(), &["--epochs", "3", "--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    // Same losses, perplexities and rates to the printed digit, epoch by epoch.
    assert_eq!(epoch_lines(&resumed), expected[1..]);

    let fails_with = |output: Output, text: &str| {
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains(text), "expected {text:?} in: {message}");
    };
    fails_with(
        train(dir.path(), &["--epochs", "3", "--resume"]),
        "already completed 3 epochs; pass --epochs above 3",
    );
    fails_with(
        train(dir.path(), &["--epochs", "4", "--resume", "--layers", "1"]),
        "--layers 2 then, 1 now",
    );
    fails_with(
        train(dir.path(), &["--epochs", "4"]),
        "pass --resume to continue it, --overwrite to start a new run",
    );

    // The saved rate after epoch 3 is 20 / 2^3. Repeating the first run's
    // --lr 20 keeps it, and another value replaces it from the next epoch.
    let last_lr = |epochs: &str, lr: &str| {
        let output = train(dir.path(), &["--epochs", epochs, "--resume", "--lr", lr]);
        assert!(output.status.success(), "{}", stderr(&output));
        let lines = epoch_lines(&output);
        let rate = lines.last().unwrap().rsplit("| lr").next().unwrap();
        rate.trim().to_string()
    };
    assert_eq!(last_lr("4", "20"), "2.5");
    assert_eq!(last_lr("5", "7"), "7");
    // The same command again keeps the rate decayed since: 7 / 2.
    assert_eq!(last_lr("6", "7"), "3.5");

    // A damaged resume file is rejected with the way out, and kept.
    let resume = dir.path().join("m.resume.safetensors");
    let intact = std::fs::read(&resume).unwrap();
    std::fs::write(&resume, &intact[..intact.len() / 2]).unwrap();
    fails_with(
        train(dir.path(), &["--epochs", "7", "--resume"]),
        "pass --overwrite instead of --resume",
    );
    std::fs::write(&resume, &intact).unwrap();

    let valid = dir.path().join("data/ptb.valid.txt");
    std::fs::write(&valid, "w1 w2 w3\n").unwrap();
    fails_with(
        train(dir.path(), &["--epochs", "7", "--resume"]),
        "was trained on other text than the files in data",
    );
    // --overwrite starts a new run on the new text.
    let fresh = train(dir.path(), &["--epochs", "1", "--overwrite"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let lines = epoch_lines(&fresh);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("epoch   1 |"), "{lines:?}");
    let elsewhere = tempfile::tempdir().unwrap();
    write_corpus(elsewhere.path());
    fails_with(
        train(elsewhere.path(), &["--epochs", "2", "--resume"]),
        "no resume file at m.resume.safetensors",
    );
}

/// Runs `train` with `extra` flags on a tiny corpus and expects a rejection
/// that names `flag`, with no checkpoint written.
fn assert_rejected(extra: &[&str], flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for split in ["train", "valid", "test"] {
        std::fs::write(
            data.join(format!("ptb.{split}.txt")),
            " the cat sat\n the dog sat\n",
        )
        .unwrap();
    }
    let mut args = vec![
        "train",
        "--data",
        "data",
        "--offline",
        "--save",
        "model.safetensors",
    ];
    if !extra.contains(&"--hidden") {
        args.extend_from_slice(&["--hidden", "8"]);
    }
    args.extend_from_slice(extra);
    let output = rnnlm(&args, dir.path());
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{extra:?}: {message}");
    assert!(
        message.contains(flag),
        "{extra:?}: message does not name {flag}: {message}"
    );
    assert!(!message.contains("panicked"), "{extra:?}: {message}");
    assert!(
        !dir.path().join("model.safetensors").exists(),
        "{extra:?}: a checkpoint was written"
    );
}

#[test]
fn train_rejects_impossible_settings() {
    assert_rejected(&["--hidden", "0"], "--hidden");
    assert_rejected(&["--dropout", "1"], "--dropout");
    assert_rejected(&["--dropout-between", "1.5"], "--dropout-between");
    assert_rejected(&["--lr", "0"], "--lr");
    assert_rejected(&["--lr=-1"], "--lr");
    assert_rejected(&["--lr", "-1"], "--lr");
    assert_rejected(&["--clip", "0"], "--clip");
    assert_rejected(&["--embed", "4"], "--embed");
    assert_rejected(&["--bptt", "0"], "--bptt");
    // The tiny corpus has 8 tokens: at most 4 streams of 2.
    assert_rejected(&["--batch", "5"], "--batch");
    assert_rejected(&["--save-every", "-1"], "--save-every");
    assert_rejected(&["--save-every", "NaN"], "--save-every");
}

/// Writes a training file of `lines` lines over the 20 words of
/// `write_corpus`, which stays in place for validation and test.
fn write_long_training_file(dir: &Path, lines: usize) {
    let text: String = (0..lines)
        .map(|line| {
            let words: Vec<String> = (0..8)
                .map(|i| format!("w{}", (line * 7 + i * 3) % 20))
                .collect();
            words.join(" ") + "\n"
        })
        .collect();
    std::fs::write(dir.join("data/ptb.train.txt"), text).unwrap();
}

/// Starts `train` with `args` in `dir`, waits for its first progress line,
/// sends it `signal` (a `kill` option) and returns its output.
fn signal_after_first_report(args: &[&str], dir: &Path, signal: &str) -> Output {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the rnnlm binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).unwrap();
        assert!(
            read > 0,
            "train ended before its first progress line: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with("epoch 1 window") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut output = child.wait_with_output().unwrap();
    output.stderr = (seen + &rest).into_bytes();
    output
}

/// Returns the training state in the resume file `path`.
fn saved_state(path: &Path) -> rnnlm::train::TrainState {
    let info = rnnlm::checkpoint::read_info(path).unwrap();
    serde_json::from_str(&info["train_state"]).unwrap()
}

#[test]
fn stopped_run_resumes_within_epoch() {
    // 60,000 lines in windows of 4 x 5 tokens: 27,000 windows, about 2 s
    // of training at this size, so a run is still in its epoch long after
    // its first progress line (window 50) reaches the test.
    let args = |extra: &[&'static str]| {
        let mut args = vec![
            "train",
            "--data",
            "data",
            "--offline",
            "--hidden",
            "12",
            "--batch",
            "4",
            "--bptt",
            "5",
            "--threads",
            "1",
            "--epochs",
            "1",
            "--save",
            "m.safetensors",
        ];
        args.extend_from_slice(extra);
        args
    };
    let prepare = || {
        let dir = tempfile::tempdir().unwrap();
        write_corpus(dir.path());
        write_long_training_file(dir.path(), 60_000);
        dir
    };
    let straight = prepare();
    let output = rnnlm(&args(&[]), straight.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = epoch_lines(&output);
    assert_eq!(expected.len(), 1, "{expected:?}");

    // Ctrl-C: the state is saved after the current window, exit status 130.
    let dir = prepare();
    let stopped = signal_after_first_report(&args(&[]), dir.path(), "-INT");
    let message = stderr(&stopped);
    assert_eq!(stopped.status.code(), Some(130), "{message}");
    assert!(message.contains("stopping after this window"), "{message}");
    assert!(
        message.contains("the same command with --resume continues"),
        "{message}"
    );
    assert!(!message.contains("error:"), "{message}");
    let state = saved_state(&dir.path().join("m.resume.safetensors"));
    let windows_done = state.partial_epoch.as_ref().unwrap().windows_done;
    assert!((50..27_000).contains(&windows_done), "{windows_done}");
    let resumed = rnnlm(&args(&["--resume"]), dir.path());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains(&format!("resuming in epoch 1 after window {windows_done}")),
        "{}",
        stderr(&resumed)
    );
    assert_eq!(epoch_lines(&resumed), expected);

    // A crash (SIGKILL) loses at most the windows since the last periodic
    // save; here one is written after every window.
    let dir = prepare();
    let killed = signal_after_first_report(&args(&["--save-every", "1e-9"]), dir.path(), "-KILL");
    assert_eq!(killed.status.code(), None, "{}", stderr(&killed));
    // The progress line of window 50 comes before that window's save, so
    // the kill may land before it: window 49's save is the last certain one.
    let state = saved_state(&dir.path().join("m.resume.safetensors"));
    assert!(state.partial_epoch.unwrap().windows_done >= 49);
    let resumed = rnnlm(&args(&["--resume"]), dir.path());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(epoch_lines(&resumed), expected);
}

#[test]
fn train_then_eval_reproduces_saved_perplexity() {
    let Some(ptb) = common::ptb_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ptb = ptb.to_str().unwrap();
    let train = rnnlm(
        &[
            "train",
            "--data",
            ptb,
            "--offline",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--max-steps",
            "15",
            "--threads",
            "2",
            "--save",
            "best.safetensors",
            "--metrics",
            "metrics.jsonl",
        ],
        dir.path(),
    );
    let out = String::from_utf8_lossy(&train.stdout).into_owned();
    assert!(train.status.success(), "train failed: {}", stderr(&train));

    // The last epoch line that saved the model carries the perplexity to match.
    let saved_line = out
        .lines()
        .rfind(|l| l.ends_with("| saved"))
        .expect("an epoch saved the model");
    let valid_ppl = saved_line
        .split("valid ppl")
        .nth(1)
        .unwrap()
        .split('|')
        .next()
        .unwrap()
        .trim()
        .to_string();

    let eval = rnnlm(
        &[
            "eval",
            "--checkpoint",
            "best.safetensors",
            "--split",
            "valid",
            "--data",
            ptb,
        ],
        dir.path(),
    );
    let eval_out = String::from_utf8_lossy(&eval.stdout).into_owned();
    assert!(eval.status.success(), "eval failed: {}", stderr(&eval));
    assert!(
        eval_out.contains(&format!("perplexity {valid_ppl} ")),
        "train printed {valid_ppl}, eval printed: {eval_out}"
    );

    // Metrics: progress and epoch records with the documented keys.
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["event"] == "epoch").collect();
    assert_eq!(epochs.len(), 2);
    for key in [
        "tokens_per_sec",
        "train_ppl",
        "valid_ppl",
        "lr",
        "epoch",
        "step",
    ] {
        assert!(epochs[0].get(key).is_some(), "epoch record lacks {key}");
    }
    assert_eq!(epochs[1]["step"], 30);
    assert!(records.iter().any(|r| r["event"] == "progress"));
    assert!(records.last().unwrap()["event"] == "end");
}
