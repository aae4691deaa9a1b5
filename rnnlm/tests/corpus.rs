//! Corpus reading: tokenisation rules on small files, then the real PTB.

mod common;

use std::fs;
use std::path::Path;
use std::time::Instant;

use rnnlm::corpus::{
    Corpus, CorpusError, EOS, SPLIT_FILES, TEST_FILE, TRAIN_FILE, UNK, VALID_FILE, Vocab,
    encode_file, encode_text,
};

fn write_splits(dir: &Path, train: &str, valid: &str, test: &str) {
    fs::write(dir.join(TRAIN_FILE), train).unwrap();
    fs::write(dir.join(VALID_FILE), valid).unwrap();
    fs::write(dir.join(TEST_FILE), test).unwrap();
}

fn vocab_of(words: &[&str]) -> Vocab {
    Vocab::from_words(words.iter().map(|word| word.to_string()).collect()).unwrap()
}

fn decode(vocab: &Vocab, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&id| vocab.word(id).to_owned()).collect()
}

#[test]
fn vocab_follows_first_appearance() {
    let dir = tempfile::tempdir().unwrap();
    write_splits(dir.path(), "a b a\nc b\n", "b c\n", "a\n");

    let corpus = Corpus::load(dir.path()).unwrap();

    assert_eq!(corpus.vocab.words(), ["a", "b", EOS, "c"]);
    assert_eq!(corpus.train, [0, 1, 0, 2, 3, 1, 2]);
    assert_eq!(corpus.valid, [1, 3, 2]);
    assert_eq!(corpus.test, [0, 2]);
    assert_eq!(corpus.vocab.eos(), Some(2));
    assert_eq!(corpus.vocab.unk(), None);
}

#[test]
fn final_line_without_newline_gets_eos() {
    let vocab = vocab_of(&["a", "b", EOS]);

    let with_newline = encode_text(&vocab, "a b\nb\n", "t").unwrap();
    let without_newline = encode_text(&vocab, "a b\nb", "t").unwrap();

    assert_eq!(with_newline, [0, 1, 2, 1, 2]);
    assert_eq!(without_newline, with_newline);
}

#[test]
fn empty_and_blank_lines_give_eos() {
    let vocab = vocab_of(&["a", "b", EOS]);

    let ids = encode_text(&vocab, "a\n\n   \nb\n", "t").unwrap();

    assert_eq!(ids, [0, 2, 2, 2, 1, 2]);
    assert_eq!(encode_text(&vocab, "\n", "t").unwrap(), [2]);
}

#[test]
fn crlf_reads_as_lf() {
    let dir = tempfile::tempdir().unwrap();
    let lf = "x y\nz\n\nx\n";
    let crlf = lf.replace('\n', "\r\n");
    write_splits(dir.path(), &crlf, &crlf, "z\r\n");

    let from_crlf = Corpus::load(dir.path()).unwrap();
    write_splits(dir.path(), lf, lf, "z\n");
    let from_lf = Corpus::load(dir.path()).unwrap();

    assert_eq!(from_crlf.vocab, from_lf.vocab);
    assert_eq!(from_crlf.train, from_lf.train);
    assert_eq!(from_crlf.valid, from_lf.valid);
    assert_eq!(from_crlf.test, from_lf.test);
    assert_eq!(from_lf.vocab.words(), ["x", "y", EOS, "z"]);
}

#[test]
fn tabs_and_repeated_spaces_split_words() {
    let vocab = vocab_of(&["a", "b", EOS]);

    let ids = encode_text(&vocab, "  a\t\tb   a \n", "t").unwrap();

    assert_eq!(ids, [0, 1, 0, 2]);
}

#[test]
fn unknown_word_maps_to_unk() {
    let dir = tempfile::tempdir().unwrap();
    write_splits(dir.path(), "a <unk> b\n", "a zebra\nquagga b\n", "b\n");

    let corpus = Corpus::load(dir.path()).unwrap();
    let unk = corpus.vocab.unk().unwrap();

    assert_eq!(unk, 1);
    assert_eq!(corpus.valid, [0, unk, 3, unk, 2, 3]);
    assert_eq!(
        decode(&corpus.vocab, &corpus.valid),
        ["a", UNK, EOS, UNK, "b", EOS]
    );
}

#[test]
fn unknown_word_without_unk_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_splits(dir.path(), "a b\n", "a\nb zebra\n", "a\n");

    let error = Corpus::load(dir.path()).unwrap_err();

    let valid_path = dir.path().join(VALID_FILE).display().to_string();
    match &error {
        CorpusError::UnknownWord {
            word,
            source_name,
            line,
        } => {
            assert_eq!(word, "zebra");
            assert_eq!(source_name, &valid_path);
            assert_eq!(*line, 2);
        }
        other => panic!("expected UnknownWord, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("\"zebra\""), "{message}");
    assert!(message.contains(&valid_path), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn invalid_utf8_names_line() {
    let dir = tempfile::tempdir().unwrap();
    write_splits(dir.path(), "a b\n", "a\n", "b\n");
    fs::write(dir.path().join(TEST_FILE), b"a\nb\nb \xff a\nb\n").unwrap();

    let error = Corpus::load(dir.path()).unwrap_err();

    match &error {
        CorpusError::InvalidUtf8 { source_name, line } => {
            assert_eq!(
                source_name,
                &dir.path().join(TEST_FILE).display().to_string()
            );
            assert_eq!(*line, 3);
        }
        other => panic!("expected InvalidUtf8, got {other:?}"),
    }
    assert!(
        error.to_string().contains("line 3 is not valid UTF-8"),
        "{error}"
    );
}

#[test]
fn invalid_utf8_on_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    fs::write(&path, b"\xc3(\n").unwrap();

    let error = encode_file(&vocab_of(&[EOS]), &path).unwrap_err();

    assert!(
        matches!(error, CorpusError::InvalidUtf8 { line: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn missing_splits_listed_with_fix() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(TRAIN_FILE), "a\n").unwrap();

    let error = Corpus::load(dir.path()).unwrap_err();

    match &error {
        CorpusError::MissingSplits { dir: got, missing } => {
            assert_eq!(got, dir.path());
            assert_eq!(missing, &[VALID_FILE, TEST_FILE]);
        }
        other => panic!("expected MissingSplits, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("rnnlm train"), "{message}");
    for name in SPLIT_FILES {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn empty_training_file_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_splits(dir.path(), "", "a\n", "a\n");

    let error = Corpus::load(dir.path()).unwrap_err();

    match &error {
        CorpusError::Empty { source_name } => {
            assert_eq!(
                source_name,
                &dir.path().join(TRAIN_FILE).display().to_string()
            );
        }
        other => panic!("expected Empty, got {other:?}"),
    }
}

#[test]
fn empty_text_rejected() {
    let error = encode_text(&vocab_of(&[EOS]), "", "<stdin>").unwrap_err();

    assert!(
        matches!(&error, CorpusError::Empty { source_name } if source_name == "<stdin>"),
        "{error:?}"
    );
}

#[test]
fn encode_file_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.txt");

    let error = encode_file(&vocab_of(&[EOS]), &path).unwrap_err();

    assert!(
        matches!(&error, CorpusError::FileNotFound { path: got } if got == &path),
        "{error:?}"
    );
}

#[test]
fn encode_without_eos_rejected() {
    let error = encode_text(&vocab_of(&["a"]), "a\n", "t").unwrap_err();

    assert!(matches!(error, CorpusError::MissingEos), "{error:?}");
}

#[test]
fn from_words_round_trips() {
    let vocab = vocab_of(&["the", UNK, EOS, "cat"]);

    assert_eq!(vocab.len(), 4);
    assert_eq!(vocab.id("cat"), Some(3));
    assert_eq!(vocab.id("dog"), None);
    assert_eq!(vocab.word(0), "the");
    assert_eq!(vocab.eos(), Some(2));
    assert_eq!(vocab.unk(), Some(1));
    assert_eq!(vocab.words(), ["the", UNK, EOS, "cat"]);
}

#[test]
fn from_words_rejects_duplicates() {
    let words = ["a", "b", "c", "b"].map(String::from).to_vec();

    let error = Vocab::from_words(words).unwrap_err();

    match &error {
        CorpusError::DuplicateWord {
            word,
            first,
            second,
        } => {
            assert_eq!(word, "b");
            assert_eq!(*first, 1);
            assert_eq!(*second, 3);
        }
        other => panic!("expected DuplicateWord, got {other:?}"),
    }
}

#[test]
fn from_words_rejects_unreadable_words() {
    for (words, bad_id) in [
        (vec!["a", ""], 1),
        (vec!["a b"], 0),
        (vec!["x", "y", "z\n"], 2),
    ] {
        let words: Vec<String> = words.into_iter().map(String::from).collect();

        let error = Vocab::from_words(words).unwrap_err();

        assert!(
            matches!(error, CorpusError::InvalidWord { id, .. } if id == bad_id),
            "{error:?}"
        );
    }
    assert!(matches!(
        Vocab::from_words(Vec::new()),
        Err(CorpusError::EmptyVocab)
    ));
}

/// Splits a PTB file the standard way, without the library: every newline
/// becomes `<eos>`, then the text splits on ASCII whitespace.
fn reference_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    for (index, segment) in text.split('\n').enumerate() {
        if index > 0 {
            tokens.push(EOS);
        }
        tokens.extend(segment.split_ascii_whitespace());
    }
    tokens
}

#[test]
fn real_ptb_counts_and_tokens() {
    let Some(dir) = common::ptb_dir() else {
        return;
    };

    let start = Instant::now();
    let corpus = Corpus::load(&dir).unwrap();
    println!("Corpus::load({}) took {:?}", dir.display(), start.elapsed());

    // Token counts of Mikolov's PTB split, <eos> included, as widely reported.
    let known_counts = [929_589, 73_760, 82_430];
    let splits = [&corpus.train, &corpus.valid, &corpus.test];
    for ((name, ids), known) in SPLIT_FILES.into_iter().zip(splits).zip(known_counts) {
        let text = fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.ends_with('\n'), "{name} should end with a newline");
        let expected = reference_tokens(&text);

        assert_eq!(expected.len(), known, "{name}: reference count");
        assert_eq!(ids.len(), known, "{name}: token count");
        assert_eq!(decode(&corpus.vocab, ids), expected, "{name}: tokens");
        println!("{name}: {} tokens", ids.len());
    }

    assert_eq!(corpus.vocab.len(), 10_000);
    assert_eq!(corpus.vocab.word(0), "aer");
    assert!(corpus.vocab.unk().is_some());
    let first_line_words = reference_tokens(&fs::read_to_string(dir.join(TRAIN_FILE)).unwrap())
        .iter()
        .position(|&token| token == EOS)
        .unwrap();
    assert_eq!(corpus.vocab.eos(), Some(first_line_words as u32));
}
