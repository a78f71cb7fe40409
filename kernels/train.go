package kernels

// TrainBackend is the training half of the seam: the backward form of every
// forward op the Llama block uses, plus the LoRA forward/backward pair and
// the loss (llm.c style: each xxxBackward takes the forward's inputs and the
// gradient of its output).
//
// Base weights and norm weights are frozen, so backward ops produce input
// gradients only; the LoRA A/B gradients are the only parameter gradients.
// As with Backend, every output is overwritten unless its comment says it
// accumulates, and no slice is retained after a call returns.
type TrainBackend interface {
	Backend

	// MatMulT: dx[t,:] = Wᵀ·dy[t,:] for t in [0,T), the input gradient of
	// MatMul through a frozen weight. dy [T, Rows], dx [T, Cols].
	MatMulT(dx, dy Buf, w Matrix, T int)

	// RMSNormBackward: dx[t,:] = (∂y[t,:]/∂x[t,:])ᵀ·dy[t,:] for
	// y = RMSNorm(x, weight, eps); with s = 1/sqrt(mean(x²)+eps) and n = weight.Len():
	//   dx[i] = s·weight[i]·dy[i] − s³/n · x[i] · Σ_j dy[j]·weight[j]·x[j].
	// x, dy, dx [T, weight.Len()]; dx may alias dy.
	RMSNormBackward(dx, dy, x, weight Buf, eps float32)

	// RoPEBackward rotates, in place, the gradient of each head of token t
	// back by the angle pos[t]·invFreq[i] (the transpose of RoPE's rotation).
	// dx [pos.Len(), nHeads*headDim], invFreq [headDim/2].
	RoPEBackward(dx Buf, pos IntBuf, nHeads, headDim int, invFreq Buf)

	// AttentionForwardTrain is causal self-attention within each of B
	// sequences of T tokens (token j of sequence b is row b*T+j):
	//   out[b,t,h,:] = Σ_{j<=t} softmax_j(q[b,t,h,:]·k[b,j,g,:]/sqrt(headDim)) · v[b,j,g,:]
	// with g = h/(nHeads/nKVHeads), and saves the log-sum-exp of each row of
	// scaled scores, lse[b,t,h], from which AttentionBackward recomputes the
	// probabilities (so memory stays O(T) per head, not O(T²)).
	// q, out [B*T, nHeads*headDim]; k, v [B*T, nKVHeads*headDim]; lse [B*T, nHeads].
	AttentionForwardTrain(out, lse, q, k, v Buf, B, T, nHeads, nKVHeads, headDim int)

	// AttentionBackward writes dq, dk, dv (the gradients of q, k, v, summed
	// over the query heads sharing a KV head) from dout, given the forward's
	// inputs, its output and lse. Shapes as in AttentionForwardTrain.
	AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v Buf, B, T, nHeads, nKVHeads, headDim int)

	// SiLUMulBackward: for out = silu(gate)·up,
	//   dgate[i] = dout[i]·up[i]·σ(gate[i])·(1 + gate[i]·(1−σ(gate[i])))
	//   dup[i]   = dout[i]·silu(gate[i]).
	// dgate and dup may not alias the inputs.
	SiLUMulBackward(dgate, dup, dout, gate, up Buf)

	// CrossEntropy, for each row t of logits [T, vocab] (vocab =
	// logits.Len()/labels.Len()) whose label is not IgnoreIndex:
	//   loss[t] = logsumexp(logits[t,:]) − logits[t,labels[t]]
	//   dlogits[t,:] = scale·(softmax(logits[t,:]) − onehot(labels[t]))
	// Ignored rows get loss 0 and zero gradient. scale is 1/(number of label
	// tokens of the whole optimizer step), the per-token mean over the step (transformers' loss averaged over
	// non-ignored labels of all accumulated micro-batches).
	// loss [T]; dlogits [T, vocab] may alias logits.
	CrossEntropy(loss, dlogits, logits Buf, labels IntBuf, scale float32)

	// LoRAForward adds one adapter's low-rank update to a projection's
	// output, saving the rank-space activations for the backward pass:
	//   z[t,:] = A·x[t,:];  y[t,:] += scale·(B·z[t,:]).
	// x [T, in], z [T, rank], y [T, out], A [rank, in], B [out, rank] (PEFT layouts).
	LoRAForward(y, z, x, a, b Buf, T, in, out, rank int, scale float32)

	// LoRABackward accumulates the adapter's gradients and its share of the
	// input gradient, with dz = scale·Bᵀ·dy[t,:]:
	//   dB += scale·Σ_t dy[t,:]⊗z[t,:];  dA += Σ_t dz[t,:]⊗x[t,:];  dx[t,:] += Aᵀ·dz[t,:].
	// Shapes as in LoRAForward; dA [rank, in], dB [out, rank], dx [T, in], dy [T, out].
	LoRABackward(dA, dB, dx, x, z, dy, a, b Buf, T, in, out, rank int, scale float32)
}

// IgnoreIndex is the label of tokens that carry no loss (PyTorch's
// cross_entropy ignore_index, used for prompts and padding).
const IgnoreIndex = -100
