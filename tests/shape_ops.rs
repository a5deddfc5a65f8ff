//! The shape ops ports from NumPy and PyTorch reach for: `permute`, `concat`, `stack`,
//! `reshape` to any rank and `matmul` with 1-D operands. Values against index
//! arithmetic written out here, gradients against central differences (first and
//! second order), and bad input refused with the tape left as it was.

use tapegrad::check::{gradcheck, gradgradcheck, Tolerance};
use tapegrad::{Result, Shape, Tape, Tensor, Var};

/// Distinct values, so that a misplaced element shows.
fn ramp(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::new((0..n).map(|v| v as f64 * 0.37 - 1.5).collect(), dims).unwrap()
}

/// Σ wᵢ·yᵢ with distinct weights: a scalar whose gradient tells every element apart.
fn weighted<'t>(y: Var<'t>) -> Var<'t> {
    let n = y.shape().numel();
    let w = Tensor::new((1..=n).map(|v| v as f64).collect(), y.shape()).unwrap();
    (y * y.tape().constant_tensor(&w)).sum()
}

/// Checks `f` against central differences, first and second order, at `inputs`.
fn check(f: impl for<'t> Fn(&[Var<'t>]) -> Var<'t>, inputs: &[Tensor]) -> Result<()> {
    let tol = Tolerance::default();
    let first = gradcheck(|xs| Ok(weighted(f(xs))), inputs, &tol)?;
    assert!(first.passed, "{first}");
    let second = gradgradcheck(|xs| Ok(weighted(f(xs)).sin()), inputs, &tol)?;
    assert!(second.passed, "{second}");
    Ok(())
}

#[test]
fn permute_moves_every_element_to_its_permuted_index() -> Result<()> {
    let dims = [2, 3, 4, 5];
    let x = ramp(&dims);
    let tape = Tape::new();
    let xv = tape.tensor(&x);
    for axes in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
        let y = xv.permute(&axes).value();
        let out: Vec<usize> = axes.iter().map(|&a| dims[a]).collect();
        assert_eq!(y.shape().dims(), &out[..]);
        // y[i] = x[j] with j[axes[k]] = i[k], over every output index.
        for flat in 0..x.numel() {
            let mut i = [0usize; 4];
            let mut rest = flat;
            for k in (0..4).rev() {
                i[k] = rest % out[k];
                rest /= out[k];
            }
            let mut j = [0usize; 4];
            for k in 0..4 {
                j[axes[k]] = i[k];
            }
            assert_eq!(y.get(&i), x.get(&j), "axes {axes:?} at {i:?}");
        }
        check(|xs| xs[0].permute(&axes), std::slice::from_ref(&x))?;
    }
    // A permutation of a rank-6 tensor, and back.
    let six = ramp(&[1, 2, 1, 3, 2, 1]);
    let v = tape.tensor(&six);
    let there = v.permute(&[5, 3, 1, 4, 0, 2]);
    assert_eq!(there.shape().dims(), &[1, 3, 2, 2, 1, 1]);
    assert_eq!(there.permute(&[4, 2, 5, 1, 3, 0]).value(), six);
    Ok(())
}

#[test]
fn permute_refuses_what_is_not_a_permutation() {
    let tape = Tape::new();
    let x = tape.tensor(&ramp(&[2, 3]));
    let len = tape.len();
    assert_eq!(
        x.try_permute(&[0, 0]).unwrap_err().to_string(),
        "permute: axes [0, 0] must hold each of 0..2 exactly once"
    );
    assert!(x.try_permute(&[1, 2]).is_err());
    assert_eq!(
        x.try_permute(&[2, 0, 1]).unwrap_err().to_string(),
        "permute: axes [2, 0, 1] give an order for 3 axes, but the shape [2, 3] has 2"
    );
    assert_eq!(tape.len(), len);
}

#[test]
fn concat_joins_along_each_axis_and_hands_each_input_its_slice() -> Result<()> {
    let tape = Tape::new();
    for axis in 0..3 {
        let parts: Vec<Tensor> = [1, 3, 2]
            .iter()
            .map(|&n| {
                let mut dims = [2, 3, 2];
                dims[axis] = n;
                ramp(&dims)
            })
            .collect();
        let vars: Vec<Var> = parts.iter().map(|t| tape.tensor(t)).collect();
        let y = Var::concat(&vars, axis).value();
        let mut out = [2, 3, 2];
        out[axis] = 6;
        assert_eq!(y.shape().dims(), &out);
        // Each output element comes from the part whose range along `axis` holds it.
        for flat in 0..y.numel() {
            let mut i = [
                flat / (out[1] * out[2]),
                flat / out[2] % out[1],
                flat % out[2],
            ];
            let mut part = 0;
            while i[axis] >= parts[part].shape().dims()[axis] {
                i[axis] -= parts[part].shape().dims()[axis];
                part += 1;
            }
            assert_eq!(y.data()[flat], parts[part].get(&i).unwrap(), "axis {axis}");
        }
        check(|xs| Var::concat(xs, axis), &parts)?;
    }
    // One input is a copy of it.
    let x = tape.tensor(&ramp(&[2, 2]));
    assert_eq!(Var::concat(&[x], 1).value(), x.value());
    Ok(())
}

#[test]
fn concat_refuses_bad_input_and_leaves_the_tape_intact() {
    let tape = Tape::new();
    let a = tape.tensor(&ramp(&[2, 3]));
    let b = tape.tensor(&ramp(&[3, 3]));
    let len = tape.len();
    assert_eq!(
        Var::try_concat(&[a, b], 1).unwrap_err().to_string(),
        "concat: shapes [2, 3] and [3, 3] differ off axis 1"
    );
    assert!(Var::try_concat(&[a, b], 2).is_err());
    assert!(Var::try_concat(&[], 0).is_err());
    let other = Tape::new();
    let c = other.tensor(&ramp(&[1, 3]));
    assert!(Var::try_concat(&[a, c], 0).is_err());
    assert_eq!(tape.len(), len);
    assert!(Var::try_stack(&[a, b], 0).is_err());
    assert!(Var::try_stack(&[a, a], 3).is_err());
    assert!(Var::try_stack(&[a, c], 0).is_err());
    assert_eq!(tape.len(), len);
}

#[test]
fn stack_adds_an_axis_at_each_place() -> Result<()> {
    let tape = Tape::new();
    let parts = [
        ramp(&[2, 3]),
        ramp(&[2, 3]).map(|v| -v),
        ramp(&[2, 3]).map(|v| v * v),
    ];
    let vars: Vec<Var> = parts.iter().map(|t| tape.tensor(t)).collect();
    for axis in 0..3 {
        let y = Var::stack(&vars, axis).value();
        let mut dims = vec![2, 3];
        dims.insert(axis, 3);
        assert_eq!(y.shape().dims(), &dims[..]);
        for (n, part) in parts.iter().enumerate() {
            for r in 0..2 {
                for c in 0..3 {
                    let mut i = vec![r, c];
                    i.insert(axis, n);
                    assert_eq!(y.get(&i), part.get(&[r, c]), "axis {axis}");
                }
            }
        }
        check(|xs| Var::stack(xs, axis), &parts)?;
    }
    Ok(())
}

#[test]
fn reshape_takes_any_rank() -> Result<()> {
    let x = ramp(&[4, 6]);
    let tape = Tape::new();
    let xv = tape.tensor(&x);
    for dims in [
        vec![2, 2, 3, 2],
        vec![1, 2, 2, 3, 2],
        vec![2, 1, 2, 1, 3, 2, 1],
    ] {
        let y = xv.reshape(Shape::new(&dims));
        assert_eq!(y.shape().dims(), &dims[..]);
        assert_eq!(y.value().data(), x.data());
        assert_eq!(y.op_name(), "reshape");
        let d = dims.clone();
        check(
            move |xs| xs[0].reshape(Shape::new(&d)),
            std::slice::from_ref(&x),
        )?;
    }
    let len = tape.len();
    assert!(xv.try_reshape([1, 1, 1, 1, 5]).is_err());
    assert_eq!(tape.len(), len);
    // A reduction of a rank-5 tensor that drops its axis puts it back with a reshape of
    // five axes when its rule is recorded: second derivatives through it work.
    let five = ramp(&[2, 1, 3, 1, 2]);
    check(|xs| xs[0].max_axis(2, false), std::slice::from_ref(&five))?;
    check(|xs| xs[0].logsumexp(4, false), &[five])?;
    // Replay recomputes a long reshape like any other node.
    let y = weighted(xv.reshape([1, 2, 2, 3, 2]).sigmoid());
    let before = y.item()?;
    xv.set_value(&x.map(|v| v + 1.0))?;
    tape.replay();
    let fresh = Tape::new();
    let again = weighted(
        fresh
            .tensor(&x.map(|v| v + 1.0))
            .reshape([1, 2, 2, 3, 2])
            .sigmoid(),
    );
    assert_eq!(y.item()?, again.item()?);
    assert_ne!(y.item()?, before);
    Ok(())
}

#[test]
fn matmul_multiplies_vectors_by_numpys_rule() -> Result<()> {
    let tape = Tape::new();
    let a = ramp(&[3, 4]);
    let v = Tensor::vector([0.5, -1.0, 2.0, 0.25]);
    let u = Tensor::vector([1.0, -2.0, 0.5]);
    let (av, vv, uv) = (tape.tensor(&a), tape.tensor(&v), tape.tensor(&u));
    let at = |i: usize, j: usize| a.get(&[i, j]).unwrap();
    // [3, 4]·[4] = [3]: Σⱼ a[i, j]·v[j].
    let mv = av.matmul(vv).value();
    let want: Vec<f64> = (0..3)
        .map(|i| (0..4).map(|j| at(i, j) * v.data()[j]).sum())
        .collect();
    assert_eq!(mv.shape().dims(), &[3]);
    for (got, want) in mv.data().iter().zip(&want) {
        assert!((got - want).abs() < 1e-14);
    }
    // [3]·[3, 4] = [4]: Σᵢ u[i]·a[i, j].
    let vm = uv.matmul(av).value();
    assert_eq!(vm.shape().dims(), &[4]);
    for j in 0..4 {
        let want: f64 = (0..3).map(|i| u.data()[i] * at(i, j)).sum();
        assert!((vm.data()[j] - want).abs() < 1e-14);
    }
    // [4]·[4]: the dot product, a scalar.
    let dot = vv.matmul(vv);
    assert!(dot.shape().is_scalar());
    assert_eq!(dot.item()?, 0.25 + 1.0 + 4.0 + 0.0625);
    assert_eq!(dot.backward()?.wrt(vv)?, v.map(|x| 2.0 * x));
    // Batched: [2, 3, 4]·[4] = [2, 3] and [4]·[2, 4, 3] = [2, 3].
    let batch = ramp(&[2, 3, 4]);
    assert_eq!(tape.tensor(&batch).matmul(vv).shape().dims(), &[2, 3]);
    let right = ramp(&[2, 4, 3]);
    assert_eq!(vv.matmul(tape.tensor(&right)).shape().dims(), &[2, 3]);
    // Gradients, first and second order, for every arrangement.
    check(|xs| xs[0].matmul(xs[1]), &[a.clone(), v.clone()])?;
    check(|xs| xs[0].matmul(xs[1]), &[u.clone(), a.clone()])?;
    check(|xs| xs[0].matmul(xs[1]), &[v.clone(), v.clone()])?;
    check(|xs| xs[0].matmul(xs[1]), &[batch, v.clone()])?;
    check(|xs| xs[0].matmul(xs[1]), &[v.clone(), right])?;
    // Shapes that do not fit are refused, naming the shapes given, with nothing recorded.
    let len = tape.len();
    assert_eq!(
        uv.try_matmul(vv).unwrap_err().to_string(),
        "matmul: shapes [3] and [4] cannot be multiplied (a vector is taken as a row on \
         the left, a column on the right)"
    );
    assert!(av.try_matmul(uv).is_err());
    assert!(vv.try_matmul(av).is_err());
    assert!(vv.try_matmul(tape.constant(2.0)).is_err());
    assert_eq!(tape.len(), len + 1); // the constant only
    Ok(())
}

#[test]
fn elementwise_ops_on_empty_tensors_give_empty_tensors() -> Result<()> {
    // Shapes with a zero-length axis: every value and gradient is empty, and nothing
    // reads past the empty slices (the row-by-row kernels have no row length to use).
    for dims in [vec![0], vec![3, 0], vec![0, 4]] {
        let tape = Tape::new();
        let empty = Tensor::new(Vec::new(), Shape::new(&dims))?;
        let (a, b) = (tape.tensor(&empty), tape.tensor(&empty));
        let y = ((a * b + a) / (b.exp() + 1.0)).tanh();
        assert_eq!(y.shape().dims(), dims.as_slice());
        assert!(y.value().data().is_empty());
        let grads = y.sum().backward()?;
        assert_eq!(grads.wrt(a)?.shape().dims(), dims.as_slice());
        assert!(grads.wrt(b)?.data().is_empty());
        assert_eq!(y.sum().item()?, 0.0);
    }
    Ok(())
}

/// (a, b) ↦ [a, b]: a tensor made from two scalars in one node.
#[derive(Clone)]
struct Pair;

impl tapegrad::Function for Pair {
    fn name(&self) -> &str {
        "pair"
    }
    fn output_shape(&self, _: &[&Shape]) -> Result<Shape> {
        Ok(Shape::new(&[2]))
    }
    fn forward(&self, x: &[tapegrad::TensorRef<'_>], out: &mut [f64]) {
        out[0] = x[0].data()[0];
        out[1] = x[1].data()[0];
    }
    fn backward(
        &self,
        _: &[tapegrad::TensorRef<'_>],
        _: tapegrad::TensorRef<'_>,
        gy: tapegrad::TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        Ok(vec![
            Tensor::scalar(gy.data()[0]),
            Tensor::scalar(gy.data()[1]),
        ])
    }
}

#[test]
fn a_tensor_made_from_scalars_keeps_the_slots_of_the_nodes_after_it() -> Result<()> {
    // On a tape of scalars so far, a general node with a tensor value takes two slots:
    // the scalars recorded after it sit past both.
    let tape = Tape::new();
    let (a, b) = (tape.var(2.0), tape.var(3.0));
    let ab = a.apply2(&Pair, b)?;
    let c = tape.var(5.0);
    let y = ab.sum() * c + c * c;
    assert_eq!(y.item()?, 50.0);
    let grads = y.backward()?;
    assert_eq!(grads.wrt_scalar(a)?, 5.0);
    assert_eq!(grads.wrt_scalar(c)?, 15.0);
    c.set_scalar(1.0)?;
    tape.replay();
    assert_eq!(y.item()?, 6.0);
    Ok(())
}
