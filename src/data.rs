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
