//! The built-in ops, one family per file, and the registry that lists them.
//!
//! Every op is one block in its family's file: the doc comment (formula, derivative,
//! edge convention), the struct, its forward and backward side by side, the points
//! where it must be gradient-checked, and its [`Var`] method. Each op implements the
//! public [`Function`] trait; the tape keeps built-in ops in an enum (one variant per
//! op, carrying its parameters) so that dispatch is a `match`, not a virtual call.
//!
//! [`registry`] lists every built-in op with default parameters; the gradient-check
//! tests walk it, so a new op is tested as soon as it is registered.
#![doc = include_str!("../../docs/adding-an-op.md")]

/// `Function::backward` for an op whose native rule is `backward_accumulate`: the
/// gradients are accumulated into fresh tensors.
macro_rules! backward_via_accumulate {
    () => {
        fn backward(
            &self,
            inputs: &[TensorRef<'_>],
            y: TensorRef<'_>,
            gy: TensorRef<'_>,
        ) -> Result<Vec<Tensor>> {
            crate::function::backward_by_accumulation(self, inputs, y, gy)
        }
    };
}

pub mod activation;
pub mod arith;
pub mod elementwise;
pub mod index;
pub mod linalg;
pub mod loss;
mod math;
pub mod reduce;
pub mod softmax;

use crate::error::{Error, Result};
use crate::function::{Function, InputGrads, UserFunction};
use crate::shape::{BroadcastIndex, Shape};
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;
use std::sync::Arc;

/// A built-in op's type, with its code and its place in [`Op`]: the tape's typed
/// recording paths know at compile time which op they record, and build an [`Op`] only
/// when they take the general path.
pub(crate) trait Registered: Sized {
    /// The op's code in a node.
    const CODE: OpCode;
    /// The op as an [`Op`].
    fn into_op(self) -> Op;
}

/// An elementwise function of one input, given by its value and its derivative.
pub(crate) trait Unary {
    /// The op's name.
    const NAME: &'static str;
    /// y = f(x).
    fn value(&self, x: f64) -> f64;
    /// dy/dx at x, given y = f(x) (whichever is cheaper to use).
    fn derivative(&self, x: f64, y: f64) -> f64;
    /// The op's parameter, for an op with one number as its parameter: the tape keeps it
    /// in a scalar node, so that replay can rebuild the op.
    fn param(&self) -> Option<f64> {
        None
    }
    /// The op with parameter `p`, the inverse of [`param`](Unary::param).
    fn with_param(p: f64) -> Self
    where
        Self: Sized + Default,
    {
        let _ = p;
        Self::default()
    }
    /// `y[i] = f(x[i])` for every element (the slices have one length): `value` in a
    /// loop, unless the op has a faster way to the same bits.
    #[inline(always)]
    fn values(&self, x: &[f64], y: &mut [f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = self.value(x);
        }
    }
    /// (y, dy/dx) at x together: what the tape computes when it records a scalar node.
    /// Override it when both share work (sine and cosine share one range reduction);
    /// the results must equal `value` and `derivative` bit for bit.
    #[inline(always)]
    fn value_and_derivative(&self, x: f64) -> (f64, f64) {
        let y = self.value(x);
        (y, self.derivative(x, y))
    }
    /// Points where the gradient checker tests the op.
    fn check_at(&self) -> &'static [f64];
    /// Where random gradient checks may draw x.
    fn domain(&self) -> (f64, f64) {
        (-3.0, 3.0)
    }
    /// dy/dx written with tape ops, given x and y = f(x) as variables, so that it can
    /// be differentiated again. The default reports that the op has no such rule.
    fn derivative_graph<'t>(&self, x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        let _ = (x, y);
        Err(Error::NotTwiceDifferentiable {
            function: Self::NAME.to_string(),
        })
    }
}

/// The form of a binary op's partials: where they are fixed numbers or the operands
/// themselves, the op states them here once, its `derivative` reads them from here,
/// and the tape gives its scalar nodes a kind of their own from them (a sum, a
/// difference, a product), whose sweep needs neither the op nor, for sums and
/// differences, the values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Partials {
    /// (∂y/∂a, ∂y/∂b) are these numbers everywhere.
    Constant(f64, f64),
    /// (∂y/∂a, ∂y/∂b) = (b, a).
    Swapped,
    /// Computed by the op's `derivative` from the values.
    Computed,
}

impl Partials {
    /// The partials at (a, b) of a rule that is not [`Computed`](Partials::Computed).
    #[inline(always)]
    pub(crate) const fn at(self, a: f64, b: f64) -> (f64, f64) {
        match self {
            Partials::Constant(da, db) => (da, db),
            Partials::Swapped => (b, a),
            Partials::Computed => panic!("partials computed by the op's derivative"),
        }
    }
}

/// An elementwise function of two inputs that broadcast against each other.
pub(crate) trait Binary {
    /// The op's name.
    const NAME: &'static str;
    /// The form of the op's partials (see [`Partials`]).
    const PARTIALS: Partials = Partials::Computed;
    /// y = f(a, b).
    fn value(&self, a: f64, b: f64) -> f64;
    /// (∂y/∂a, ∂y/∂b) at (a, b), given y = f(a, b).
    fn derivative(&self, a: f64, b: f64, y: f64) -> (f64, f64);
    /// (y, ∂y/∂a, ∂y/∂b) at (a, b) together: what the tape computes when it records a
    /// scalar node.
    #[inline(always)]
    fn value_and_derivative(&self, a: f64, b: f64) -> (f64, f64, f64) {
        let y = self.value(a, b);
        let (da, db) = self.derivative(a, b, y);
        (y, da, db)
    }
    /// Points `(a, b)` where the gradient checker tests the op.
    fn check_at(&self) -> &'static [(f64, f64)];
    /// Where random gradient checks may draw a and b.
    fn domain(&self) -> [(f64, f64); 2] {
        [(-3.0, 3.0), (-3.0, 3.0)]
    }
    /// (∂y/∂a, ∂y/∂b) written with tape ops, given a, b and y = f(a, b) as variables
    /// (elementwise, at the broadcast shape), so that they can be differentiated again.
    /// The default reports that the op has no such rule.
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        b: Var<'t>,
        y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        let _ = (a, b, y);
        Err(Error::NotTwiceDifferentiable {
            function: Self::NAME.to_string(),
        })
    }
}

/// Sums `v` over the axes along which `shape` was broadcast to make it, so that the
/// result has `shape`: the graph form of accumulating into a broadcast operand.
pub(crate) fn sum_to<'t>(mut v: Var<'t>, shape: &Shape) -> Result<Var<'t>> {
    while v.shape().rank() > shape.rank() {
        v = v.try_sum_axis(0, false)?;
    }
    for (axis, &d) in shape.dims().iter().enumerate() {
        if d == 1 && v.shape().dims()[axis] != 1 {
            v = v.try_sum_axis(axis, true)?;
        }
    }
    Ok(v)
}

fn unary_shape(name: &str, inputs: &[&Shape]) -> Result<Shape> {
    match inputs {
        [x] => Ok((*x).clone()),
        _ => Err(Error::Arity {
            op: name.to_string(),
            expected: 1,
            got: inputs.len(),
        }),
    }
}

fn binary_shape(name: &str, inputs: &[&Shape]) -> Result<Shape> {
    match inputs {
        [a, b] => a.broadcast(b).ok_or_else(|| Error::ShapeMismatch {
            op: name.to_string(),
            left: (*a).clone(),
            right: (*b).clone(),
        }),
        _ => Err(Error::Arity {
            op: name.to_string(),
            expected: 2,
            got: inputs.len(),
        }),
    }
}

#[inline]
fn unary_forward<U: Unary>(op: &U, inputs: &[TensorRef<'_>], out: &mut [f64]) {
    op.values(inputs[0].data(), out);
}

#[inline]
fn unary_backward<U: Unary>(
    op: &U,
    inputs: &[TensorRef<'_>],
    y: TensorRef<'_>,
    gy: TensorRef<'_>,
    gx: &mut InputGrads<'_>,
) {
    let g = gx.get_mut(0);
    let (x, y, gy) = (inputs[0].data(), y.data(), gy.data());
    for k in 0..g.len() {
        g[k] += gy[k] * op.derivative(x[k], y[k]);
    }
}

#[inline]
fn binary_forward<B: Binary>(op: &B, inputs: &[TensorRef<'_>], out: &mut [f64]) {
    let (a, b) = (inputs[0], inputs[1]);
    if a.shape() == b.shape() {
        for ((y, &a), &b) in out.iter_mut().zip(a.data()).zip(b.data()) {
            *y = op.value(a, b);
        }
    } else {
        let out_shape = a
            .shape()
            .broadcast(b.shape())
            .expect("checked when recorded");
        let (a, b) = (a.data(), b.data());
        BroadcastIndex::new(inputs[0].shape(), inputs[1].shape(), &out_shape)
            .for_each(|k, ia, ib| out[k] = op.value(a[ia], b[ib]));
    }
}

/// Gradients of a broadcast binary op: each output element adds into the input
/// elements it was made from, which sums the gradient over broadcast axes.
#[inline]
fn binary_backward<B: Binary>(
    op: &B,
    inputs: &[TensorRef<'_>],
    y: TensorRef<'_>,
    gy: TensorRef<'_>,
    gx: &mut InputGrads<'_>,
) {
    let (a, b) = (inputs[0], inputs[1]);
    let (arena, oa, ob) = gx.pair();
    let (yv, gyv) = (y.data(), gy.data());
    if a.shape() == b.shape() {
        let (a, b) = (a.data(), b.data());
        for k in 0..yv.len() {
            let (da, db) = op.derivative(a[k], b[k], yv[k]);
            arena[oa + k] += gyv[k] * da;
            arena[ob + k] += gyv[k] * db;
        }
    } else {
        let (av, bv) = (a.data(), b.data());
        BroadcastIndex::new(a.shape(), b.shape(), y.shape()).for_each(|k, ia, ib| {
            let (da, db) = op.derivative(av[ia], bv[ib], yv[k]);
            arena[oa + ia] += gyv[k] * da;
            arena[ob + ib] += gyv[k] * db;
        });
    }
}

/// The elementwise kernels on raw slices that replay and backward use for tensor nodes:
/// an operand shorter than the output repeats cyclically over it (`a[k % a.len()]`),
/// which covers equal shapes, scalars and rows broadcast down the leading axes.
mod slices {
    use super::{Binary, Unary};

    /// Calls `f(k, ia)` for `k < n` with `ia = k % len`, without a division.
    #[inline(always)]
    fn cyclic(n: usize, len: usize, mut f: impl FnMut(usize, usize)) {
        let mut i = 0;
        for k in 0..n {
            f(k, i);
            i += 1;
            if i == len {
                i = 0;
            }
        }
    }

    #[inline]
    pub(super) fn unary_forward<U: Unary>(op: &U, x: &[f64], y: &mut [f64]) {
        op.values(x, y);
    }

    #[inline]
    pub(super) fn unary_backward<U: Unary>(
        op: &U,
        x: &[f64],
        y: &[f64],
        gy: &[f64],
        gx: &mut [f64],
    ) {
        for (((gx, &gy), &x), &y) in gx.iter_mut().zip(gy).zip(x).zip(y) {
            *gx += gy * op.derivative(x, y);
        }
    }

    #[inline]
    pub(super) fn binary_forward<B: Binary>(op: &B, a: &[f64], b: &[f64], y: &mut [f64]) {
        let n = y.len();
        if a.len() == n && b.len() == 1 {
            let b = b[0];
            for (y, &a) in y.iter_mut().zip(a) {
                *y = op.value(a, b);
            }
        } else if a.len() == n {
            // `b` repeats over whole rows of the output (equal shapes, a bias row): row
            // by row, without bounds checks. A plan gives slices only to operands that
            // repeat so (see `cyclic_len`), so their length divides the output's; an
            // empty `b` comes with an empty output.
            debug_assert!(if b.is_empty() {
                n == 0
            } else {
                n.is_multiple_of(b.len())
            });
            if !b.is_empty() {
                for (y, a) in y.chunks_exact_mut(b.len()).zip(a.chunks_exact(b.len())) {
                    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                        *y = op.value(a, b);
                    }
                }
            }
        } else {
            let mut ia = 0;
            cyclic(y.len(), b.len(), |k, ib| {
                y[k] = op.value(a[ia], b[ib]);
                ia += 1;
                if ia == a.len() {
                    ia = 0;
                }
            });
        }
    }

    /// Adds the gradients of both operands into `g` at `oa` and `ob` (which may be
    /// equal, for `x op x`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn binary_backward<B: Binary>(
        op: &B,
        a: &[f64],
        b: &[f64],
        y: &[f64],
        gy: &[f64],
        g: &mut [f64],
        oa: usize,
        ob: usize,
    ) {
        let n = y.len();
        if oa != ob && a.len() == n {
            // Two nodes: their gradient ranges are disjoint, so each gets its own slice
            // (and the common equal-shape case runs without bounds checks).
            let lb = b.len();
            let (ga, gb) = if oa < ob {
                let (low, high) = g.split_at_mut(ob);
                (&mut low[oa..oa + n], &mut high[..lb])
            } else {
                let (low, high) = g.split_at_mut(oa);
                (&mut high[..n], &mut low[ob..ob + lb])
            };
            if lb == 1 {
                // A scalar operand: its gradient sums in a register, in the same order.
                let (b, mut sum) = (b[0], gb[0]);
                let operands = a.iter().zip(y.iter().zip(gy));
                for (ga, (&a, (&y, &gy))) in ga.iter_mut().zip(operands) {
                    let (da, db) = op.derivative(a, b, y);
                    *ga += gy * da;
                    sum += gy * db;
                }
                gb[0] = sum;
            } else if lb > 0 {
                // Row by row (equal shapes are one row), without bounds checks: `b`
                // repeats over whole rows, as in `binary_forward`.
                debug_assert!(n.is_multiple_of(lb));
                let rows = ga
                    .chunks_exact_mut(lb)
                    .zip(a.chunks_exact(lb))
                    .zip(y.chunks_exact(lb).zip(gy.chunks_exact(lb)));
                for ((ga, a), (y, gy)) in rows {
                    let operands = a.iter().zip(b.iter()).zip(y.iter().zip(gy));
                    for ((ga, gb), ((&a, &b), (&y, &gy))) in
                        ga.iter_mut().zip(gb.iter_mut()).zip(operands)
                    {
                        let (da, db) = op.derivative(a, b, y);
                        *ga += gy * da;
                        *gb += gy * db;
                    }
                }
            }
            // An empty `b` comes with an empty output: nothing to add.
            return;
        }
        let (mut ia, mut ib) = (0, 0);
        for k in 0..n {
            let (da, db) = op.derivative(a[ia], b[ib], y[k]);
            g[oa + ia] += gy[k] * da;
            g[ob + ib] += gy[k] * db;
            ia += 1;
            if ia == a.len() {
                ia = 0;
            }
            ib += 1;
            if ib == b.len() {
                ib = 0;
            }
        }
    }
}

/// The slice kernels of an op, by kind: `true` when the op ran on the slices.
macro_rules! slice_rule {
    (forward unary $f:expr, $a:ident, $b:ident, $y:ident) => {{
        let _ = $b;
        slices::unary_forward($f, $a, $y);
        true
    }};
    (forward binary $f:expr, $a:ident, $b:ident, $y:ident) => {{
        slices::binary_forward($f, $a, $b, $y);
        true
    }};
    (forward squared $f:expr, $a:ident, $b:ident, $y:ident) => {{
        $y[0] = loss::SquaredError::value($f, $a, $b);
        true
    }};
    (forward general $f:expr, $a:ident, $b:ident, $y:ident) => {{
        let _ = ($f, $a, $b, $y);
        false
    }};
    (backward unary $f:expr, $a:ident, $b:ident, $y:ident, $gy:ident, $g:ident, $oa:ident, $ob:ident) => {{
        let _ = ($b, $ob);
        let n = $y.len();
        slices::unary_backward($f, $a, $y, $gy, &mut $g[$oa..$oa + n]);
        true
    }};
    (backward binary $f:expr, $a:ident, $b:ident, $y:ident, $gy:ident, $g:ident, $oa:ident, $ob:ident) => {{
        slices::binary_backward($f, $a, $b, $y, $gy, $g, $oa, $ob);
        true
    }};
    (backward squared $f:expr, $a:ident, $b:ident, $y:ident, $gy:ident, $g:ident, $oa:ident, $ob:ident) => {{
        let _ = $y;
        let scale = loss::SquaredError::scale($f, $gy[0], $a.len());
        loss::add_square_gradients($a, $b, scale, $g, $oa, $ob);
        true
    }};
    (backward general $f:expr, $a:ident, $b:ident, $y:ident, $gy:ident, $g:ident, $oa:ident, $ob:ident) => {{
        let _ = ($f, $a, $b, $y, $gy, $g, $oa, $ob);
        false
    }};
}

/// Checks that an op parameter is a finite number.
/// The value of an op method's `try_` twin, or a panic with the error's message (which
/// names the op and the bad value) at the caller's line: the panicking half of the
/// fallibility rule (see the crate docs).
#[inline(always)]
#[track_caller]
pub(crate) fn or_panic<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

pub(crate) fn finite(op: &str, name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::InvalidParameter {
            op: op.to_string(),
            name,
            value,
        })
    }
}

/// The `Function` impl of an op, from its kind.
macro_rules! impl_function {
    (unary $ty:ty) => {
        impl Function for $ty {
            fn name(&self) -> &str {
                <$ty as Unary>::NAME
            }
            fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
                unary_shape(<$ty as Unary>::NAME, inputs)
            }
            fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
                unary_forward(self, inputs, out)
            }
            backward_via_accumulate!();
            fn backward_accumulate(
                &self,
                inputs: &[TensorRef<'_>],
                y: TensorRef<'_>,
                gy: TensorRef<'_>,
                gx: &mut InputGrads<'_>,
            ) -> Result<()> {
                unary_backward(self, inputs, y, gy, gx);
                Ok(())
            }
            fn check_at(&self) -> Vec<Vec<Tensor>> {
                <$ty as Unary>::check_at(self)
                    .iter()
                    .map(|&x| vec![Tensor::scalar(x)])
                    .collect()
            }
            fn domain(&self) -> Vec<(f64, f64)> {
                vec![<$ty as Unary>::domain(self)]
            }
            fn backward_graph<'t>(
                &self,
                inputs: &[Var<'t>],
                y: Var<'t>,
                gy: Var<'t>,
            ) -> Result<Vec<Var<'t>>> {
                let d = <$ty as Unary>::derivative_graph(self, inputs[0], y)?;
                Ok(vec![gy.try_mul(d)?])
            }
        }
    };
    (binary $ty:ty) => {
        impl Function for $ty {
            fn name(&self) -> &str {
                <$ty as Binary>::NAME
            }
            fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
                binary_shape(<$ty as Binary>::NAME, inputs)
            }
            fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
                binary_forward(self, inputs, out)
            }
            backward_via_accumulate!();
            fn backward_accumulate(
                &self,
                inputs: &[TensorRef<'_>],
                y: TensorRef<'_>,
                gy: TensorRef<'_>,
                gx: &mut InputGrads<'_>,
            ) -> Result<()> {
                binary_backward(self, inputs, y, gy, gx);
                Ok(())
            }
            fn check_at(&self) -> Vec<Vec<Tensor>> {
                <$ty as Binary>::check_at(self)
                    .iter()
                    .map(|&(a, b)| vec![Tensor::scalar(a), Tensor::scalar(b)])
                    .collect()
            }
            fn domain(&self) -> Vec<(f64, f64)> {
                <$ty as Binary>::domain(self).to_vec()
            }
            fn backward_graph<'t>(
                &self,
                inputs: &[Var<'t>],
                y: Var<'t>,
                gy: Var<'t>,
            ) -> Result<Vec<Var<'t>>> {
                let (a, b) = (inputs[0], inputs[1]);
                let (da, db) = <$ty as Binary>::derivative_graph(self, a, b, y)?;
                Ok(vec![
                    sum_to(gy.try_mul(da)?, &a.shape())?,
                    sum_to(gy.try_mul(db)?, &b.shape())?,
                ])
            }
        }
    };
    (squared $ty:ty) => {};
    (general $ty:ty) => {};
}

macro_rules! elementwise {
    (unary) => {
        true
    };
    (binary) => {
        true
    };
    (squared) => {
        false
    };
    (general) => {
        false
    };
}

/// True for the squared-error losses, whose two operands have equal shapes and whose
/// value is one number: they run on raw slices too.
macro_rules! squared {
    (squared) => {
        true
    };
    ($kind:ident) => {
        false
    };
}

/// The scalar rule of an elementwise op, by kind: (y, ∂y/∂a, ∂y/∂b) for the tape's
/// scalar nodes (b is ignored by unary ops); `None` for general ops.
macro_rules! scalar_rule {
    (unary $f:expr, $a:ident, $b:ident) => {{
        let (y, d) = Unary::value_and_derivative($f, $a);
        Some((y, d, 0.0))
    }};
    (binary $f:expr, $a:ident, $b:ident) => {
        Some(Binary::value_and_derivative($f, $a, $b))
    };
    ($kind:ident $f:expr, $a:ident, $b:ident) => {{
        let _ = ($f, $a, $b);
        None
    }};
}

/// The partials (∂y/∂a, ∂y/∂b) of a binary elementwise op at its inputs' values and its
/// value, by kind; (0, 0) for ops of other kinds, which binary scalar nodes never hold.
macro_rules! partials_rule {
    (binary $ty:ty, $a:ident, $b:ident, $y:ident) => {
        Binary::derivative(&<$ty>::default(), $a, $b, $y)
    };
    ($kind:ident $ty:ty, $a:ident, $b:ident, $y:ident) => {{
        let _ = ($a, $b, $y);
        (0.0, 0.0)
    }};
}

/// A unary op's parameter and the op rebuilt from it, by kind.
macro_rules! param_rule {
    (rebuild unary $ty:ty, $p:ident) => {
        Some(<$ty as Unary>::with_param($p))
    };
    (rebuild $kind:ident $ty:ty, $p:ident) => {{
        let _ = $p;
        None::<$ty>
    }};
}

/// A kernel that runs a general node on the raw slices of its two inputs' values,
/// chosen by the node's op when the node is recorded ([`Op::kernel`]): the plan hook
/// through which an op gives the tape a faster path than views of its inputs. Its
/// sizes are fixed then, so neither forward nor backward looks at a shape again.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel {
    /// A plain matrix product `[m, k]·[k, n]` (see [`linalg::Matmul`]).
    Product { m: usize, k: usize, n: usize },
}

impl Kernel {
    /// The numbers of elements of the two inputs and of the output.
    #[inline]
    pub(crate) fn lens(self) -> [usize; 3] {
        match self {
            Kernel::Product { m, k, n } => [m * k, k * n, m * n],
        }
    }

    /// Writes the output from the inputs' values `a` and `b`, each of its length in
    /// [`lens`](Self::lens).
    #[inline]
    pub(crate) fn forward(self, a: &[f64], b: &[f64], y: &mut [f64]) {
        match self {
            Kernel::Product { m, k, n } => linalg::product(m, k, n, a, b, y),
        }
    }

    /// Adds the gradient of input `input` (0 or 1), given the inputs' values and the
    /// output's gradient `gy`, into `g`, of that input's length.
    #[inline]
    pub(crate) fn backward(
        self,
        input: usize,
        (a, b): (&[f64], &[f64]),
        gy: &[f64],
        g: &mut [f64],
    ) {
        match self {
            Kernel::Product { m, k, n } => {
                if input == 0 {
                    linalg::add_grad_a((m, k, n), gy, b, g);
                } else {
                    linalg::add_grad_b((m, k, n), a, gy, g);
                }
            }
        }
    }
}

impl Op {
    /// The kernel that runs this op on two distinct inputs of shapes `a` and `b`, if
    /// the op has one for them: a matrix product of plain matrices.
    pub(crate) fn kernel(&self, a: &Shape, b: &Shape) -> Option<Kernel> {
        match self {
            Op::Matmul(_) => {
                linalg::plain_product(a, b).map(|(m, k, n)| Kernel::Product { m, k, n })
            }
            _ => None,
        }
    }
}

/// The registry: one line per built-in op, `kind Variant = family::Struct;`.
///
/// `unary` and `binary` ops get their `Function` impl from their `Unary` / `Binary`
/// rule; `squared` (the squared-error losses, which also run on raw slices through
/// `loss::SquaredError`) and `general` ops implement `Function` by hand in their file.
macro_rules! ops {
    ($( $kind:ident $variant:ident = $family:ident :: $ty:ident; )*) => {
        /// What made a node: a leaf, a built-in op (with its parameters) or a user function.
        #[derive(Clone)]
        pub(crate) enum Op {
            Leaf,
            Custom(UserFunction),
            $( $variant($family::$ty), )*
        }

        /// Which op made a node, without its parameters: one byte in every node.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum OpCode {
            Leaf,
            Custom,
            $( $variant, )*
        }

        impl OpCode {
            /// True when the op of this code carries parameters.
            #[inline]
            pub(crate) fn has_params(self) -> bool {
                match self {
                    OpCode::Leaf => false,
                    OpCode::Custom => true,
                    $( OpCode::$variant => std::mem::size_of::<$family::$ty>() != 0, )*
                }
            }
        }

        impl Op {
            pub(crate) fn name(&self) -> &str {
                match self {
                    Op::Leaf => "leaf",
                    Op::Custom(f) => f.name(),
                    $( Op::$variant(f) => Function::name(f), )*
                }
            }

            /// The op's code.
            #[inline(always)]
            pub(crate) fn code(&self) -> OpCode {
                match self {
                    Op::Leaf => OpCode::Leaf,
                    Op::Custom(_) => OpCode::Custom,
                    $( Op::$variant(_) => OpCode::$variant, )*
                }
            }

            /// The op of `code` when it carries no parameters.
            pub(crate) fn from_code(code: OpCode) -> Option<Op> {
                match code {
                    OpCode::Leaf => Some(Op::Leaf),
                    OpCode::Custom => None,
                    $( OpCode::$variant => (std::mem::size_of::<$family::$ty>() == 0)
                        .then(|| Op::$variant(<$family::$ty>::default())), )*
                }
            }

            /// True for built-in ops whose output has the broadcast shape of the inputs.
            pub(crate) fn is_elementwise(&self) -> bool {
                match self {
                    $( Op::$variant(_) => elementwise!($kind), )*
                    Op::Leaf | Op::Custom(_) => false,
                }
            }

            /// True for the squared-error losses (`mse`, `half_sse`): two operands of
            /// equal shapes, one number out, with slice kernels of their own.
            pub(crate) fn is_squared_error(&self) -> bool {
                match self {
                    $( Op::$variant(_) => squared!($kind), )*
                    Op::Leaf | Op::Custom(_) => false,
                }
            }

            /// The unary op of `code` with parameter `p` (see [`Unary::param`]).
            pub(crate) fn from_code_param(code: OpCode, p: f64) -> Option<Op> {
                match code {
                    $( OpCode::$variant => param_rule!(rebuild $kind $family::$ty, p)
                        .map(Op::$variant), )*
                    OpCode::Leaf | OpCode::Custom => None,
                }
            }

            /// (y, ∂y/∂a, ∂y/∂b) of the elementwise built-in op of `code` on scalars (b is
            /// ignored by unary ops), given its parameter if it has one; `None` for every
            /// other op. Replay's dispatch: one `match`.
            #[inline(always)]
            pub(crate) fn scalar_eval_code(
                code: OpCode,
                param: f64,
                a: f64,
                b: f64,
            ) -> Option<(f64, f64, f64)> {
                match code {
                    $( OpCode::$variant => {
                        if std::mem::size_of::<$family::$ty>() == 0 {
                            scalar_rule!($kind &<$family::$ty>::default(), a, b)
                        } else {
                            match param_rule!(rebuild $kind $family::$ty, param) {
                                Some(f) => scalar_rule!($kind &f, a, b),
                                None => None,
                            }
                        }
                    } )*
                    OpCode::Leaf | OpCode::Custom => None,
                }
            }

            /// (∂y/∂a, ∂y/∂b) of the binary built-in op of `code` (an op without
            /// parameters) at its inputs' values `a` and `b` and its value `y`: what
            /// backward multiplies a binary scalar node's gradient by. (0, 0) for the
            /// codes of other ops, which binary scalar nodes never hold. Backward's
            /// dispatch: one `match`, whose arms read only the values they use.
            #[inline(always)]
            pub(crate) fn binary_partials_code(
                code: OpCode,
                a: f64,
                b: f64,
                y: f64,
            ) -> (f64, f64) {
                match code {
                    $( OpCode::$variant => partials_rule!($kind $family::$ty, a, b, y), )*
                    OpCode::Leaf | OpCode::Custom => (0.0, 0.0),
                }
            }

            /// Forward of an elementwise built-in op on slices: `y[k] = f(a[k % a.len()],
            /// b[k % b.len()])` (`b` is ignored by unary ops, whose `a` has `y`'s length);
            /// of a squared-error loss, its one number from equal-length `a` and `b`.
            /// `false`, doing nothing, for every other op.
            #[inline]
            pub(crate) fn forward_slices(&self, a: &[f64], b: &[f64], y: &mut [f64]) -> bool {
                match self {
                    $( Op::$variant(f) => slice_rule!(forward $kind f, a, b, y), )*
                    Op::Leaf | Op::Custom(_) => false,
                }
            }

            /// Backward of an elementwise built-in op, or of a squared-error loss, on
            /// slices: adds the gradients of `a` and `b` into `g` at offsets `oa` and
            /// `ob`. `false`, doing nothing, for every other op.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            pub(crate) fn backward_slices(
                &self,
                a: &[f64],
                b: &[f64],
                y: &[f64],
                gy: &[f64],
                g: &mut [f64],
                oa: usize,
                ob: usize,
            ) -> bool {
                match self {
                    $( Op::$variant(f) => slice_rule!(backward $kind f, a, b, y, gy, g, oa, ob), )*
                    Op::Leaf | Op::Custom(_) => false,
                }
            }

            /// The op's output shape, checked to fit a tensor: an op on inputs that
            /// fit may still ask for too many elements (a broadcast of `[n, 1]` with
            /// `[1, m]`, a product of `[n, 0]` and `[0, m]`).
            pub(crate) fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
                let shape = match self {
                    Op::Leaf => Ok(Shape::scalar()),
                    Op::Custom(f) => f.output_shape(inputs),
                    $( Op::$variant(f) => Function::output_shape(f, inputs), )*
                }?;
                shape.check_size(self.name())?;
                Ok(shape)
            }

            #[inline]
            pub(crate) fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
                match self {
                    Op::Leaf => {}
                    // The arena's slots hold old values; built-in ops write every
                    // element, and a user function gets a zeroed slot, so one that adds
                    // into it still computes the right value.
                    Op::Custom(f) => {
                        out.fill(0.0);
                        f.forward(inputs, out)
                    }
                    $( Op::$variant(f) => Function::forward(f, inputs, out), )*
                }
            }

            /// The op's backward rule written with tape ops (see
            /// [`Function::backward_graph`]); a leaf has no inputs and no rule.
            pub(crate) fn backward_graph<'t>(
                &self,
                inputs: &[Var<'t>],
                y: Var<'t>,
                gy: Var<'t>,
            ) -> Result<Vec<Var<'t>>> {
                match self {
                    Op::Leaf => Ok(Vec::new()),
                    Op::Custom(f) => f.backward_graph(inputs, y, gy),
                    $( Op::$variant(f) => Function::backward_graph(f, inputs, y, gy), )*
                }
            }

            #[inline]
            pub(crate) fn backward_accumulate(
                &self,
                inputs: &[TensorRef<'_>],
                y: TensorRef<'_>,
                gy: TensorRef<'_>,
                gx: &mut InputGrads<'_>,
            ) -> Result<()> {
                match self {
                    Op::Leaf => Ok(()),
                    Op::Custom(f) => f.backward_accumulate(inputs, y, gy, gx),
                    $( Op::$variant(f) => Function::backward_accumulate(f, inputs, y, gy, gx), )*
                }
            }
        }

        $( impl_function!($kind $family::$ty); )*

        $( impl Registered for $family::$ty {
            const CODE: OpCode = OpCode::$variant;
            #[inline(always)]
            fn into_op(self) -> Op {
                Op::$variant(self)
            }
        } )*

        /// Every built-in op with its default parameters, in registry order. The
        /// gradient-check tests walk this list.
        ///
        /// ```
        /// let names: Vec<String> =
        ///     tapegrad::ops::registry().iter().map(|f| f.name().to_string()).collect();
        /// assert!(names.contains(&"sigmoid".to_string()));
        /// ```
        pub fn registry() -> Vec<Arc<dyn Function>> {
            vec![ $( Arc::new($family::$ty::default()) as Arc<dyn Function>, )* ]
        }
    };
}

ops! {
    binary  Add = arith::Add;
    binary  Sub = arith::Sub;
    binary  Mul = arith::Mul;
    binary  Div = arith::Div;
    unary   Neg = arith::Neg;
    unary   Powf = arith::Powf;
    unary   Powi = arith::Powi;
    unary   AddScalar = arith::AddScalar;
    unary   MulScalar = arith::MulScalar;
    unary   DivScalar = arith::DivScalar;
    unary   ScalarSub = arith::ScalarSub;
    unary   ScalarDiv = arith::ScalarDiv;
    unary   Exp = elementwise::Exp;
    unary   Ln = elementwise::Ln;
    unary   Sqrt = elementwise::Sqrt;
    unary   Abs = elementwise::Abs;
    unary   Sin = elementwise::Sin;
    unary   Cos = elementwise::Cos;
    unary   Tan = elementwise::Tan;
    unary   Sign = elementwise::Sign;
    unary   Erf = elementwise::Erf;
    binary  Equal = elementwise::Equal;
    binary  Maximum = elementwise::Maximum;
    binary  Minimum = elementwise::Minimum;
    unary   Clamp = elementwise::Clamp;
    unary   Step = activation::Step;
    unary   Sigmoid = activation::Sigmoid;
    unary   Tanh = activation::Tanh;
    unary   Relu = activation::Relu;
    unary   LeakyRelu = activation::LeakyRelu;
    unary   Elu = activation::Elu;
    unary   Softsign = activation::Softsign;
    unary   Atan = activation::Atan;
    unary   Gaussian = activation::Gaussian;
    unary   Swish = activation::Swish;
    unary   Softplus = activation::Softplus;
    unary   Gelu = activation::Gelu;
    unary   GeluTanh = activation::GeluTanh;
    general Sum = reduce::Sum;
    general Mean = reduce::Mean;
    general Max = reduce::Max;
    general SumAxis = reduce::SumAxis;
    general MeanAxis = reduce::MeanAxis;
    general MaxAxis = reduce::MaxAxis;
    general Min = reduce::Min;
    general MinAxis = reduce::MinAxis;
    general Matmul = linalg::Matmul;
    general Transpose = linalg::Transpose;
    general Permute = linalg::Permute;
    general Reshape = linalg::Reshape;
    general Softmax = softmax::Softmax;
    general LogSoftmax = softmax::LogSoftmax;
    general LogSumExp = softmax::LogSumExp;
    squared Mse = loss::Mse;
    squared HalfSse = loss::HalfSse;
    general Bce = loss::Bce;
    general BceWithLogits = loss::BceWithLogits;
    general SoftmaxCrossEntropy = loss::SoftmaxCrossEntropy;
    general Narrow = index::Narrow;
    general Concat = index::Concat;
}
