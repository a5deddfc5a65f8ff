//! Iteration over a data set: full batch, stochastic (batch 1) and mini-batch.
//!
//! The lecture's three kinds of gradient descent differ only in how many samples one
//! update sees:
//!
//! | [`Batching`] | samples per update | updates per epoch |
//! |---|---|---|
//! | `Full` (batch gradient descent) | all N | 1 |
//! | `Stochastic` (SGD) | 1, drawn at random | N |
//! | `MiniBatch(B)` | B | ⌈N/B⌉ |
//!
//! [`Batches`] hands out the sample indices of each epoch. Stochastic and mini-batch
//! orders are reshuffled at the start of every epoch from a seeded ChaCha8 generator,
//! so a run is reproducible on any machine; full batch keeps the data's own order (a
//! sum over all samples does not depend on it beyond rounding). When B does not divide
//! N, the last batch of an epoch is the smaller remainder: it is kept, not dropped, so
//! every sample is seen exactly once per epoch. An empty data set and B = 0 are errors.
//! To reproduce a run made elsewhere (say, by another framework's data loader),
//! [`Batches::with_orders`] takes the order of every epoch instead.
//!
//! [`Dataset`] holds the samples themselves (one row per sample) and copies a batch's
//! rows into reusable buffers.
//!
//! Preparing data needs no other crate: [`shuffle`] and [`permutation`] put things in
//! a seeded random order, [`train_test_split`] splits a data set in two (as
//! scikit-learn's function of that name does), and [`Csv`] reads a numeric table.

use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use smallvec::SmallVec;

/// How many samples one update sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// Every sample, in order: one update per epoch.
    Full,
    /// One sample at a time, in a fresh random order every epoch.
    Stochastic,
    /// Batches of the given size, in a fresh random order every epoch; the last batch
    /// holds the remainder when the size does not divide the data set.
    MiniBatch(usize),
}

/// The sample indices of each epoch, batch by batch.
///
/// ```
/// use tapegrad::data::{Batches, Batching};
/// let mut batches = Batches::new(10, Batching::MiniBatch(4), 7)?;
/// let sizes: Vec<usize> = batches.epoch().map(|b| b.len()).collect();
/// assert_eq!(sizes, [4, 4, 2]); // the partial batch is kept
/// let mut seen: Vec<usize> = batches.epoch().flatten().copied().collect();
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>()); // each sample once per epoch
/// assert!(Batches::new(10, Batching::MiniBatch(0), 7).is_err());
/// assert!(Batches::new(0, Batching::Full, 7).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Batches {
    order: Vec<usize>,
    size: usize,
    shuffle: bool,
    rng: ChaCha8Rng,
    epochs: usize,
    /// The given order of each epoch, in turn (see `with_orders`); empty otherwise.
    orders: Vec<Vec<usize>>,
}

impl Batches {
    /// Batches over `len` samples, shuffled from `seed`. An error for `len = 0` or a
    /// mini-batch size of 0.
    pub fn new(len: usize, batching: Batching, seed: u64) -> Result<Batches> {
        let invalid = |reason: &str| Error::Invalid {
            op: "batches".into(),
            reason: reason.into(),
        };
        if len == 0 {
            return Err(invalid("the data set is empty"));
        }
        let (size, shuffle) = match batching {
            Batching::Full => (len, false),
            Batching::Stochastic => (1, true),
            Batching::MiniBatch(0) => return Err(invalid("the batch size must be at least 1")),
            Batching::MiniBatch(b) => (b.min(len), true),
        };
        Ok(Batches {
            order: (0..len).collect(),
            size,
            shuffle,
            rng: crate::nn::init::rng(seed),
            epochs: 0,
            orders: Vec::new(),
        })
    }

    /// Batches of `batch_size` in given orders: epoch k visits the samples in the order
    /// `orders[k mod orders.len()]` (so a single order is kept for every epoch), cut
    /// into batches of `batch_size`, the last one holding the remainder. Each order
    /// must be a permutation of 0..N, the same N for all. An error for no order, an
    /// empty order, a batch size of 0, or an order that is not a permutation.
    ///
    /// [`Trainer::fit`](crate::nn::Trainer::fit) takes these batches like any other,
    /// so a run can follow the sample order of a run made elsewhere.
    ///
    /// ```
    /// use tapegrad::data::{Batches, Dataset};
    /// use tapegrad::nn::{Params, Trainer};
    /// use tapegrad::optim::Sgd;
    /// use tapegrad::Tensor;
    /// let mut batches = Batches::with_orders(2, vec![vec![2, 0, 1], vec![1, 2, 0]])?;
    /// assert_eq!(batches.epoch().collect::<Vec<_>>(), [&[2, 0][..], &[1]]);
    /// assert_eq!(batches.epoch().collect::<Vec<_>>(), [&[1, 2][..], &[0]]);
    /// assert_eq!(batches.epoch().collect::<Vec<_>>(), [&[2, 0][..], &[1]]); // again
    ///
    /// // Trainer::fit follows the order: the first step sees samples 2 and 0.
    /// let data = Dataset::new(Tensor::new(vec![1.0, 2.0, 3.0], [3, 1])?, Tensor::zeros([3, 1]))?;
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::scalar(1.0))?;
    /// let mut batches = Batches::with_orders(2, vec![vec![2, 0, 1]])?;
    /// let mut seen = Vec::new();
    /// Trainer::new().fit(&mut params, &mut Sgd::new(0.0), &data, &mut batches, 2, |p, b| {
    ///     seen.push(b.indices.to_vec());
    ///     Ok((p.get("w")? * b.inputs).sum())
    /// })?;
    /// assert_eq!(seen, [vec![2, 0], vec![1], vec![2, 0], vec![1]]);
    ///
    /// assert!(Batches::with_orders(2, vec![vec![0, 0, 1]]).is_err()); // not a permutation
    /// assert!(Batches::with_orders(2, vec![vec![0, 1], vec![0, 1, 2]]).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn with_orders(batch_size: usize, orders: Vec<Vec<usize>>) -> Result<Batches> {
        let invalid = |reason: String| Error::Invalid {
            op: "batches".into(),
            reason,
        };
        let Some(first) = orders.first() else {
            return Err(invalid("no order given".into()));
        };
        let len = first.len();
        if len == 0 {
            return Err(invalid("the data set is empty".into()));
        }
        if batch_size == 0 {
            return Err(invalid("the batch size must be at least 1".into()));
        }
        let mut seen = vec![false; len];
        for (k, order) in orders.iter().enumerate() {
            seen.fill(false);
            let permutation = order.len() == len
                && order
                    .iter()
                    .all(|&i| i < len && !std::mem::replace(&mut seen[i], true));
            if !permutation {
                return Err(invalid(format!(
                    "order {k} is not a permutation of 0..{len}: {order:?}"
                )));
            }
        }
        Ok(Batches {
            order: first.clone(),
            size: batch_size.min(len),
            shuffle: false,
            rng: crate::nn::init::rng(0),
            epochs: 0,
            orders,
        })
    }

    /// Starts the next epoch (reshuffling unless full batch, or taking the next given
    /// order) and returns its batches of sample indices.
    pub fn epoch(&mut self) -> std::slice::Chunks<'_, usize> {
        if !self.orders.is_empty() {
            let next = &self.orders[self.epochs % self.orders.len()];
            self.order.copy_from_slice(next);
        } else if self.shuffle {
            self.order.shuffle(&mut self.rng);
        }
        self.epochs += 1;
        self.order.chunks(self.size)
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Always false: a `Batches` is never empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The size of every batch but possibly the last.
    pub fn batch_size(&self) -> usize {
        self.size
    }

    /// Updates per epoch: ⌈N/B⌉.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.size)
    }

    /// Epochs started so far.
    pub fn epochs(&self) -> usize {
        self.epochs
    }
}

/// Samples for training: inputs and targets with one row per sample, and class labels
/// for classification.
///
/// ```
/// use tapegrad::data::Dataset;
/// use tapegrad::Tensor;
/// let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])?;
/// let y = Tensor::matrix(&[[0.0], [1.0], [1.0], [0.0]])?;
/// let xor = Dataset::new(x.clone(), y)?;
/// assert_eq!(xor.len(), 4);
/// let labelled = Dataset::classification(x, vec![0, 1, 1, 0])?;
/// assert_eq!(labelled.labels(), Some(&[0, 1, 1, 0][..]));
/// assert!(Dataset::new(Tensor::zeros([3, 2]), Tensor::zeros([2, 1])).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    inputs: Tensor,
    targets: Tensor,
    labels: Option<Vec<usize>>,
}

/// The number of rows of a tensor (its first axis).
fn rows(t: &Tensor) -> usize {
    t.shape().dims().first().copied().unwrap_or(0)
}

impl Dataset {
    /// Inputs `[N, …]` and targets `[N, …]`. An error when N = 0, a tensor is a scalar,
    /// or the row counts differ.
    pub fn new(inputs: Tensor, targets: Tensor) -> Result<Dataset> {
        let invalid = |reason: String| Error::Invalid {
            op: "dataset".into(),
            reason,
        };
        if inputs.shape().is_scalar() || targets.shape().is_scalar() {
            return Err(invalid("inputs and targets need one row per sample".into()));
        }
        let n = rows(&inputs);
        if n == 0 {
            return Err(invalid("the data set is empty".into()));
        }
        if rows(&targets) != n {
            return Err(invalid(format!(
                "{n} rows of inputs {} but {} rows of targets {}",
                inputs.shape(),
                rows(&targets),
                targets.shape()
            )));
        }
        Ok(Dataset {
            inputs,
            targets,
            labels: None,
        })
    }

    /// Inputs `[N, …]` with one class label per row. The targets are the labels as
    /// numbers, shape `[N]`.
    pub fn classification(inputs: Tensor, labels: Vec<usize>) -> Result<Dataset> {
        let targets = Tensor::vector(labels.iter().map(|&l| l as f64).collect::<Vec<_>>());
        let mut data = Dataset::new(inputs, targets)?;
        data.labels = Some(labels);
        Ok(data)
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        rows(&self.inputs)
    }

    /// Always false: a data set holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All inputs.
    pub fn inputs(&self) -> &Tensor {
        &self.inputs
    }

    /// All targets.
    pub fn targets(&self) -> &Tensor {
        &self.targets
    }

    /// The class labels, for a classification data set.
    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref()
    }

    /// Copies the rows `indices` into the buffers and returns the shapes of the batch's
    /// inputs and targets. The buffers keep their memory from batch to batch.
    ///
    /// # Panics
    /// If an index is not below [`len`](Dataset::len).
    pub fn gather(
        &self,
        indices: &[usize],
        inputs: &mut Vec<f64>,
        targets: &mut Vec<f64>,
        labels: &mut Vec<usize>,
    ) -> (Shape, Shape) {
        let input_shape = gather_rows(&self.inputs, indices, inputs);
        let target_shape = gather_rows(&self.targets, indices, targets);
        labels.clear();
        if let Some(all) = &self.labels {
            labels.extend(indices.iter().map(|&i| all[i]));
        }
        (input_shape, target_shape)
    }
}

/// Shuffles `items` in place into a random order drawn from `seed` (a ChaCha8
/// generator, so the same seed gives the same order on every machine).
///
/// ```
/// use tapegrad::data::shuffle;
/// let mut a: Vec<u32> = (0..10).collect();
/// let mut b = a.clone();
/// shuffle(&mut a, 3);
/// shuffle(&mut b, 3);
/// assert_eq!(a, b); // seeded
/// assert_ne!(a, (0..10).collect::<Vec<_>>());
/// a.sort();
/// assert_eq!(a, (0..10).collect::<Vec<_>>()); // the same items
/// ```
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    items.shuffle(&mut crate::nn::init::rng(seed));
}

/// The numbers 0..n in a random order drawn from `seed`: [`shuffle`] of `0..n`.
///
/// ```
/// use tapegrad::data::permutation;
/// let p = permutation(5, 1);
/// assert_eq!(p, permutation(5, 1));
/// let mut sorted = p.clone();
/// sorted.sort();
/// assert_eq!(sorted, [0, 1, 2, 3, 4]);
/// ```
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed);
    order
}

impl Dataset {
    /// A new data set of the rows `indices`, in that order (a row may repeat). An error
    /// for no index or an index not below [`len`](Dataset::len).
    ///
    /// ```
    /// use tapegrad::data::Dataset;
    /// use tapegrad::Tensor;
    /// let data = Dataset::classification(Tensor::new(vec![10.0, 20.0, 30.0], [3, 1])?, vec![0, 1, 2])?;
    /// let picked = data.select(&[2, 0])?;
    /// assert_eq!(picked.inputs().data(), &[30.0, 10.0]);
    /// assert_eq!(picked.labels(), Some(&[2, 0][..]));
    /// assert!(data.select(&[3]).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Invalid {
                op: "dataset select".into(),
                reason: format!("row {bad} is out of range for {} rows", self.len()),
            });
        }
        let (mut inputs, mut targets, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        let (input_shape, target_shape) =
            self.gather(indices, &mut inputs, &mut targets, &mut labels);
        let mut data = Dataset::new(
            Tensor::new(inputs, input_shape)?,
            Tensor::new(targets, target_shape)?,
        )?;
        if self.labels.is_some() {
            data.labels = Some(labels);
        }
        Ok(data)
    }

    /// The rows in a random order drawn from `seed` (see [`permutation`]).
    pub fn shuffled(&self, seed: u64) -> Dataset {
        self.select(&permutation(self.len(), seed))
            .expect("a permutation selects every row once")
    }
}

/// How much of a data set [`train_test_split`] sets aside for testing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TestSize {
    /// This fraction of the rows, in (0, 1), rounded up: ⌈fraction·N⌉ rows.
    Fraction(f64),
    /// This many rows, at least 1 and fewer than N.
    Count(usize),
}

/// Splits `data` into a training set and a test set, drawn at random from `seed`:
/// scikit-learn's `train_test_split` rule. The rows are put in the order
/// [`permutation`]`(N, seed)`; the first ⌈fraction·N⌉ (or the given count) form the
/// test set, the rest the training set, each in that shuffled order. Labels go with
/// their rows. Returns `(train, test)`.
///
/// An error, when either part would be empty or the size makes no sense: a fraction
/// that is not finite or not strictly between 0 and 1, a count of 0 or of N or more.
///
/// ```
/// use tapegrad::data::{train_test_split, Dataset, TestSize};
/// use tapegrad::Tensor;
/// let x = Tensor::new((0..10).map(f64::from).collect(), [10, 1])?;
/// let data = Dataset::new(x.clone(), x.map(|v| 2.0 * v))?;
/// let (train, test) = train_test_split(&data, TestSize::Fraction(0.25), 42)?;
/// assert_eq!((train.len(), test.len()), (7, 3)); // ⌈0.25·10⌉ = 3 test rows
/// // Every row lands in exactly one part, with its own target.
/// let mut rows: Vec<f64> = train.inputs().data().iter().chain(test.inputs().data()).copied().collect();
/// rows.sort_by(f64::total_cmp);
/// assert_eq!(rows, x.data());
/// assert!(test.inputs().data().iter().zip(test.targets().data()).all(|(x, y)| *y == 2.0 * x));
///
/// let (train, test) = train_test_split(&data, TestSize::Count(2), 42)?;
/// assert_eq!((train.len(), test.len()), (8, 2));
/// assert!(train_test_split(&data, TestSize::Fraction(1.0), 42).is_err());
/// assert!(train_test_split(&data, TestSize::Count(10), 42).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn train_test_split(data: &Dataset, test: TestSize, seed: u64) -> Result<(Dataset, Dataset)> {
    let n = data.len();
    let invalid = |reason: String| Error::Invalid {
        op: "train_test_split".into(),
        reason,
    };
    let n_test = match test {
        TestSize::Fraction(f) if f.is_finite() && f > 0.0 && f < 1.0 => {
            // As scikit-learn computes it, rounding of the product included.
            (f * n as f64).ceil() as usize
        }
        TestSize::Fraction(f) => {
            return Err(invalid(format!(
                "the test fraction must be strictly between 0 and 1, got {f}"
            )))
        }
        TestSize::Count(c) => c,
    };
    if n_test == 0 || n_test >= n {
        return Err(invalid(format!(
            "{n_test} test rows of {n} would leave a part empty; both parts need at least one row"
        )));
    }
    let order = permutation(n, seed);
    let (test_rows, train_rows) = order.split_at(n_test);
    Ok((data.select(train_rows)?, data.select(test_rows)?))
}

/// The column of a [`Csv`] table that holds the label: by index, counting from 0, or
/// by its name in the header. `From<usize>` and `From<&str>` make either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// The column at this index, counting from 0.
    Index(usize),
    /// The column with this name in the header line.
    Name(String),
}

impl From<usize> for Column {
    fn from(index: usize) -> Column {
        Column::Index(index)
    }
}

impl From<&str> for Column {
    fn from(name: &str) -> Column {
        Column::Name(name.to_string())
    }
}

/// Reads a numeric table in CSV form into a [`Dataset`]: every column but one is a
/// feature, the remaining one is the label.
///
/// The text is split into lines and each line into fields at the delimiter (`,` by
/// default); spaces around a field are ignored, and so are blank lines. An optional
/// first line is the header, whose names may be quoted (`"petal length"`). Every other
/// field must read as a finite number (Rust's `f64` syntax: `3`, `-0.5`, `1e-3`); there
/// is no quoting of values and no missing value. A field that is not such a number, or
/// a row with another number of fields than the first line, is an [`Error::Csv`]
/// naming the line and the column.
///
/// [`read_str`](Csv::read_str) gives inputs `[N, F]` and targets `[N, 1]`;
/// [`read_classes_str`](Csv::read_classes_str) reads the labels as class numbers
/// (whole numbers ≥ 0) for [`Dataset::classification`].
///
/// ```
/// use tapegrad::data::Csv;
/// use tapegrad::Error;
/// let text = "x1,x2,y\n0.5,1,3.5\n-1,2e-1,0\n";
/// let data = Csv::new().header(true).label("y").read_str(text)?;
/// assert_eq!(data.inputs().shape().dims(), &[2, 2]);
/// assert_eq!(data.inputs().data(), &[0.5, 1.0, -1.0, 0.2]);
/// assert_eq!(data.targets().data(), &[3.5, 0.0]);
///
/// // The label by index, no header, and the label column first.
/// let data = Csv::new().label(0).read_classes_str("1, 0.5\n0, 0.25\n2, 1")?;
/// assert_eq!(data.labels(), Some(&[1, 0, 2][..]));
/// assert_eq!(data.inputs().data(), &[0.5, 0.25, 1.0]);
///
/// // A field that is not a number, and a short row.
/// let err = Csv::new().header(true).label("y").read_str("x,y\n1,2\n3,abc\n").unwrap_err();
/// assert_eq!(err, Error::Csv { line: 3, column: 2, reason: "\"abc\" is not a number".into() });
/// let err = Csv::new().read_str("1,2,3\n4,5\n").unwrap_err();
/// assert!(matches!(err, Error::Csv { line: 2, column: 3, .. }));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Csv {
    header: bool,
    /// The label column; `None` for the last one.
    label: Option<Column>,
    delimiter: char,
}

impl Default for Csv {
    fn default() -> Csv {
        Csv::new()
    }
}

impl Csv {
    /// A reader for a table without a header, comma-separated, with the label in the
    /// last column.
    pub fn new() -> Csv {
        Csv {
            header: false,
            label: None,
            delimiter: ',',
        }
    }

    /// Whether the first line is a header of column names (default: no).
    pub fn header(mut self, header: bool) -> Csv {
        self.header = header;
        self
    }

    /// The label column, by index (counting from 0) or by name (which needs a header).
    /// Default: the last column.
    pub fn label(mut self, column: impl Into<Column>) -> Csv {
        self.label = Some(column.into());
        self
    }

    /// The field delimiter (default `,`; `';'` and `'\t'` are common too).
    pub fn delimiter(mut self, delimiter: char) -> Csv {
        self.delimiter = delimiter;
        self
    }

    /// Reads `text`: inputs `[N, F]` (the feature columns, in order) and targets
    /// `[N, 1]` (the label column). An [`Error::Csv`] for a field that is not a finite
    /// number or a ragged row; [`Error::Invalid`] for a table without rows or without
    /// a feature column, or a label column that is not in the table.
    pub fn read_str(&self, text: &str) -> Result<Dataset> {
        let table = self.parse(text)?;
        let n = table.labels.len();
        Dataset::new(
            Tensor::new(table.features, [n, table.width])?,
            Tensor::new(table.labels, [n, 1])?,
        )
    }

    /// Reads `text` as [`read_str`](Csv::read_str) does, the label column holding class
    /// numbers: a classification data set. An [`Error::Csv`] also for a label that is
    /// not a whole number ≥ 0.
    pub fn read_classes_str(&self, text: &str) -> Result<Dataset> {
        let table = self.parse(text)?;
        let n = table.labels.len();
        let mut labels = Vec::with_capacity(n);
        for (&value, &line) in table.labels.iter().zip(&table.lines) {
            if value < 0.0 || value.fract() != 0.0 || value >= 2f64.powi(53) {
                return Err(Error::Csv {
                    line,
                    column: table.label_column + 1,
                    reason: format!("the label {value} is not a class number (a whole number ≥ 0)"),
                });
            }
            labels.push(value as usize);
        }
        Dataset::classification(Tensor::new(table.features, [n, table.width])?, labels)
    }

    /// Reads the file at `path` (see [`read_str`](Csv::read_str)).
    pub fn read(&self, path: impl AsRef<std::path::Path>) -> Result<Dataset> {
        self.read_str(&read_text(path.as_ref())?)
    }

    /// Reads the file at `path` as class data (see
    /// [`read_classes_str`](Csv::read_classes_str)).
    pub fn read_classes(&self, path: impl AsRef<std::path::Path>) -> Result<Dataset> {
        self.read_classes_str(&read_text(path.as_ref())?)
    }

    /// The table's numbers: the features row by row, the label of each row, and where
    /// each row came from.
    fn parse(&self, text: &str) -> Result<Table> {
        let invalid = |reason: String| Error::Invalid {
            op: "csv".into(),
            reason,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        let names: Option<Vec<&str>> = if self.header {
            let (_, line) = lines
                .next()
                .ok_or_else(|| invalid("the text has no header line".into()))?;
            Some(
                line.split(self.delimiter)
                    .map(|name| name.trim().trim_matches('"'))
                    .collect(),
            )
        } else {
            None
        };
        let mut rows = lines.peekable();
        let columns = match (&names, rows.peek()) {
            (Some(names), _) => names.len(),
            (None, Some((_, first))) => first.split(self.delimiter).count(),
            (None, None) => 0,
        };
        let label = match &self.label {
            None => columns.saturating_sub(1),
            Some(Column::Index(i)) if *i < columns => *i,
            Some(Column::Index(i)) => {
                return Err(invalid(format!(
                    "the label column {i} is not among the table's {columns} columns"
                )))
            }
            Some(Column::Name(name)) => match &names {
                None => {
                    return Err(invalid(format!(
                        "the label column is named {name:?}, but the table has no header"
                    )))
                }
                Some(names) => names.iter().position(|n| n == name).ok_or_else(|| {
                    invalid(format!("the header {names:?} has no column {name:?}"))
                })?,
            },
        };
        if columns < 2 {
            return Err(invalid(format!(
                "a table needs a label column and at least one feature column, found {columns} columns"
            )));
        }
        let mut table = Table {
            features: Vec::new(),
            labels: Vec::new(),
            lines: Vec::new(),
            width: columns - 1,
            label_column: label,
        };
        for (line, text) in rows {
            let mut count = 0;
            for (k, field) in text.split(self.delimiter).enumerate() {
                let column = k + 1;
                if k >= columns {
                    return Err(Error::Csv {
                        line,
                        column,
                        reason: format!("the row has more than the table's {columns} fields"),
                    });
                }
                let field = field.trim();
                let value = field
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| Error::Csv {
                        line,
                        column,
                        reason: if field.is_empty() {
                            "the field is empty".into()
                        } else {
                            format!("{field:?} is not a number")
                        },
                    })?;
                if k == label {
                    table.labels.push(value);
                } else {
                    table.features.push(value);
                }
                count += 1;
            }
            if count < columns {
                return Err(Error::Csv {
                    line,
                    column: count + 1,
                    reason: format!("the row has {count} of the table's {columns} fields"),
                });
            }
            table.lines.push(line);
        }
        if table.labels.is_empty() {
            return Err(invalid("the table has no rows".into()));
        }
        Ok(table)
    }
}

/// The numbers of a CSV table (see [`Csv`]).
struct Table {
    /// The feature columns, row by row.
    features: Vec<f64>,
    /// The label of each row.
    labels: Vec<f64>,
    /// The line of the text each row came from.
    lines: Vec<usize>,
    /// The number of feature columns.
    width: usize,
    /// The index of the label column.
    label_column: usize,
}

/// The text of the file at `path`; an error naming the file when it cannot be read.
fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Invalid {
        op: "csv".into(),
        reason: format!("{}: {e}", path.display()),
    })
}

/// Copies rows of `t` into `out`; returns the shape of the gathered rows.
fn gather_rows(t: &Tensor, indices: &[usize], out: &mut Vec<f64>) -> Shape {
    let dims = t.shape().dims();
    let width: usize = dims[1..].iter().product();
    out.clear();
    for &i in indices {
        out.extend_from_slice(&t.data()[i * width..(i + 1) * width]);
    }
    // Inline storage: no heap allocation for a batch of rank up to four.
    let mut shape: SmallVec<[usize; 4]> = SmallVec::from_slice(dims);
    shape[0] = indices.len();
    Shape::new(&shape)
}

/// Two interleaving half-circles in the plane, a classic small test of a nonlinear
/// classifier (scikit-learn's `make_moons`): `n / 2` points (rounded up) on the upper
/// half-circle of radius 1 around (0, 0), with label 0, and the rest on the lower
/// half-circle around (1, 0.5), with label 1, evenly spaced along each arc, then moved
/// by Gaussian noise of standard deviation `noise` drawn from `seed`. Inputs `[n, 2]`,
/// computed with `libm`, so the same seed gives the same points on every machine.
///
/// An error for `n < 2` or a negative or non-finite `noise`.
///
/// ```
/// use tapegrad::data::two_moons;
/// let moons = two_moons(100, 0.0, 1)?;
/// assert_eq!(moons.inputs().shape().dims(), &[100, 2]);
/// let x = moons.inputs().data();
/// assert_eq!((x[0], x[1]), (1.0, 0.0)); // the first arc starts at angle 0
/// assert_eq!(moons.labels().unwrap().iter().filter(|&&l| l == 1).count(), 50);
/// assert_eq!(two_moons(100, 0.1, 7)?, two_moons(100, 0.1, 7)?); // seeded
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn two_moons(n: usize, noise: f64, seed: u64) -> Result<Dataset> {
    if n < 2 || !noise.is_finite() || noise < 0.0 {
        return Err(Error::Invalid {
            op: "two_moons".into(),
            reason: format!("needs at least 2 points and a finite noise ≥ 0, got {n} and {noise}"),
        });
    }
    let upper = n.div_ceil(2);
    let lower = n - upper;
    let angle = |i: usize, count: usize| {
        if count > 1 {
            std::f64::consts::PI * i as f64 / (count - 1) as f64
        } else {
            0.0
        }
    };
    let mut rng = crate::nn::init::rng(seed);
    let mut inputs = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..upper {
        let t = angle(i, upper);
        inputs.extend([libm::cos(t), libm::sin(t)]);
        labels.push(0);
    }
    for i in 0..lower {
        let t = angle(i, lower);
        inputs.extend([1.0 - libm::cos(t), 0.5 - libm::sin(t)]);
        labels.push(1);
    }
    if noise > 0.0 {
        for v in &mut inputs {
            *v += noise * crate::nn::init::standard_normal(&mut rng);
        }
    }
    Dataset::classification(Tensor::new(inputs, [n, 2])?, labels)
}
