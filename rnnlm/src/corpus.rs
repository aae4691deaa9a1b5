//! Penn Treebank reading: text files to token ids over a word vocabulary.
//!
//! Every line of a file becomes its words (split on whitespace) followed by
//! `<eos>`. That includes the last line when it has no trailing newline, and
//! an empty line gives `<eos>` alone. A carriage return before the newline is
//! whitespace, so CRLF files read the same as LF files.
//!
//! The vocabulary comes from the training file, in order of first appearance.
//! `<eos>` gets its id where it is first seen, after the first line's words.
//! In other text, a word outside the vocabulary maps to `<unk>` when the
//! vocabulary has that entry and is an error otherwise.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The end-of-sentence token that stands for each newline.
pub const EOS: &str = "<eos>";
/// The token that stands for a word outside the vocabulary.
pub const UNK: &str = "<unk>";

/// File name of the training split inside a PTB directory.
pub const TRAIN_FILE: &str = "ptb.train.txt";
/// File name of the validation split inside a PTB directory.
pub const VALID_FILE: &str = "ptb.valid.txt";
/// File name of the test split inside a PTB directory.
pub const TEST_FILE: &str = "ptb.test.txt";
/// The three split files, in the order train, valid, test.
pub const SPLIT_FILES: [&str; 3] = [TRAIN_FILE, VALID_FILE, TEST_FILE];

/// Errors from reading a corpus or building a vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error(
        "PTB files missing in {}: {}. Put {TRAIN_FILE}, {VALID_FILE} and {TEST_FILE} in that \
         directory, or run `rnnlm train`, which downloads them",
        dir.display(),
        missing.join(", ")
    )]
    MissingSplits { dir: PathBuf, missing: Vec<String> },

    #[error("text file {} not found: check the path", path.display())]
    FileNotFound { path: PathBuf },

    #[error("could not read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("{source_name} is empty: it needs at least one line of text")]
    Empty { source_name: String },

    #[error("{source_name}: line {line} is not valid UTF-8; convert the file to UTF-8")]
    InvalidUtf8 { source_name: String, line: usize },

    #[error(
        "{source_name}: line {line}: word {word:?} is not in the vocabulary, which has no \
         `<unk>` entry to map it to"
    )]
    UnknownWord {
        word: String,
        source_name: String,
        line: usize,
    },

    #[error("the vocabulary has no `<eos>` entry, so line ends cannot be encoded")]
    MissingEos,

    #[error("the vocabulary is empty")]
    EmptyVocab,

    #[error("vocabulary word {word:?} appears twice, at ids {first} and {second}")]
    DuplicateWord {
        word: String,
        first: usize,
        second: usize,
    },

    #[error("vocabulary word {word:?} at id {id} is empty or contains whitespace")]
    InvalidWord { word: String, id: usize },

    #[error(
        "the vocabulary has more than {} words, the limit of u32 ids",
        u32::MAX
    )]
    VocabTooLarge,
}

/// A word vocabulary: ids `0..len()` in a fixed order, each with one word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary whose id `i` is `words[i]`, as stored in a checkpoint.
    ///
    /// Rejects an empty list, a duplicate word, and a word that is empty or
    /// contains whitespace, because text reading could never produce it.
    pub fn from_words(words: Vec<String>) -> Result<Vocab, CorpusError> {
        if words.is_empty() {
            return Err(CorpusError::EmptyVocab);
        }
        if u32::try_from(words.len()).is_err() {
            return Err(CorpusError::VocabTooLarge);
        }

        let mut ids = HashMap::with_capacity(words.len());
        for (id, word) in words.iter().enumerate() {
            if word.is_empty() || word.chars().any(char::is_whitespace) {
                return Err(CorpusError::InvalidWord {
                    word: word.clone(),
                    id,
                });
            }
            // The length check above keeps every id within u32.
            if let Some(first) = ids.insert(word.clone(), id as u32) {
                return Err(CorpusError::DuplicateWord {
                    word: word.clone(),
                    first: first as usize,
                    second: id,
                });
            }
        }
        Ok(Vocab { words, ids })
    }

    /// Returns the number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Returns true when the vocabulary has no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Returns the id of `word`, or `None` when it is not in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    /// Returns the word with id `id`.
    ///
    /// # Panics
    /// When `id >= self.len()`.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// Returns all words, indexed by id.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Returns the id of `<eos>`, if the vocabulary has it.
    pub fn eos(&self) -> Option<u32> {
        self.id(EOS)
    }

    /// Returns the id of `<unk>`, if the vocabulary has it.
    pub fn unk(&self) -> Option<u32> {
        self.id(UNK)
    }

    /// Returns the id of `word`, adding it at the end when it is new.
    fn intern(&mut self, word: &str) -> Result<u32, CorpusError> {
        if let Some(id) = self.id(word) {
            return Ok(id);
        }
        let id = u32::try_from(self.words.len()).map_err(|_| CorpusError::VocabTooLarge)?;
        self.words.push(word.to_owned());
        self.ids.insert(word.to_owned(), id);
        Ok(id)
    }
}

/// The three PTB splits as token ids over the training vocabulary.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub vocab: Vocab,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
}

impl Corpus {
    /// Reads `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt` from `dir`.
    ///
    /// The vocabulary is built from the training file. Validation and test
    /// words outside it map to `<unk>`, or fail with
    /// [`CorpusError::UnknownWord`] when the training file has no `<unk>`.
    pub fn load(dir: &Path) -> Result<Corpus, CorpusError> {
        let missing: Vec<String> = SPLIT_FILES
            .iter()
            .filter(|name| !dir.join(name).is_file())
            .map(|name| name.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(CorpusError::MissingSplits {
                dir: dir.to_path_buf(),
                missing,
            });
        }

        let train_path = dir.join(TRAIN_FILE);
        let train_text = read_text(&train_path)?;
        let (vocab, train) = build_vocab(&train_text, &train_path.display().to_string())?;
        drop(train_text);

        let valid = encode_file(&vocab, &dir.join(VALID_FILE))?;
        let test = encode_file(&vocab, &dir.join(TEST_FILE))?;
        tracing::debug!(
            dir = %dir.display(),
            vocab = vocab.len(),
            train = train.len(),
            valid = valid.len(),
            test = test.len(),
            "loaded PTB corpus"
        );
        Ok(Corpus {
            vocab,
            train,
            valid,
            test,
        })
    }
}

/// Reads the text file at `path` and encodes it with `vocab`.
pub fn encode_file(vocab: &Vocab, path: &Path) -> Result<Vec<u32>, CorpusError> {
    let text = read_text(path)?;
    encode_text(vocab, &text, &path.display().to_string())
}

/// Encodes `text` with `vocab`: each line's words, then `<eos>`.
///
/// `source_name` names the text in errors (a file path, or `<stdin>`).
pub fn encode_text(vocab: &Vocab, text: &str, source_name: &str) -> Result<Vec<u32>, CorpusError> {
    if text.is_empty() {
        return Err(CorpusError::Empty {
            source_name: source_name.to_owned(),
        });
    }
    let eos = vocab.eos().ok_or(CorpusError::MissingEos)?;
    let unk = vocab.unk();

    let mut tokens = Vec::with_capacity(estimated_tokens(text));
    for (index, line) in text.lines().enumerate() {
        for word in line.split_whitespace() {
            let id = match (vocab.id(word), unk) {
                (Some(id), _) => id,
                (None, Some(unk)) => unk,
                (None, None) => {
                    return Err(CorpusError::UnknownWord {
                        word: word.to_owned(),
                        source_name: source_name.to_owned(),
                        line: index + 1,
                    });
                }
            };
            tokens.push(id);
        }
        tokens.push(eos);
    }
    Ok(tokens)
}

/// Builds the vocabulary of a training text and encodes the text with it.
fn build_vocab(text: &str, source_name: &str) -> Result<(Vocab, Vec<u32>), CorpusError> {
    if text.is_empty() {
        return Err(CorpusError::Empty {
            source_name: source_name.to_owned(),
        });
    }

    let mut vocab = Vocab {
        words: Vec::new(),
        ids: HashMap::new(),
    };
    let mut eos = None;
    let mut tokens = Vec::with_capacity(estimated_tokens(text));
    for line in text.lines() {
        for word in line.split_whitespace() {
            tokens.push(vocab.intern(word)?);
        }
        let eos_id = match eos {
            Some(id) => id,
            None => *eos.insert(vocab.intern(EOS)?),
        };
        tokens.push(eos_id);
    }
    Ok((vocab, tokens))
}

/// Returns a token-count guess for reserving capacity: PTB averages about
/// 5.5 bytes a token, so this overshoots a little on it.
fn estimated_tokens(text: &str) -> usize {
    text.len() / 5 + 1
}

/// Reads a whole file as UTF-8, naming the first invalid line on failure.
fn read_text(path: &Path) -> Result<String, CorpusError> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => CorpusError::FileNotFound {
            path: path.to_path_buf(),
        },
        _ => CorpusError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;

    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        CorpusError::InvalidUtf8 {
            source_name: path.display().to_string(),
            line,
        }
    })
}
