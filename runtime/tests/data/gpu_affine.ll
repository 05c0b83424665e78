; A hand-written model for the runtime's GPU test, in the artifact's PTX entry ABI
; `(bufs, dims, extent, status)`: `affine` writes y[i] = 2*x[i] + T (buffers 0 and 1, dim 0),
; `check` sets its status to 1 when some x[i] is negative. Built with
; `llc-19 -march=nvptx64 -mcpu=sm_80 -mattr=+ptx70 gpu_affine.ll -o gpu_affine_sm_80.ptx`.
target datalayout = "e-i64:64-i128:128-v16:16-v32:32-n16:32:64"
target triple = "nvptx64-nvidia-cuda"

declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()

define i64 @index() {
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %cta = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
  %nt = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
  %b = mul i32 %cta, %nt
  %i = add i32 %b, %tid
  %w = zext i32 %i to i64
  ret i64 %w
}

define void @affine(ptr %bufs, ptr %dims, i64 %extent, ptr %status) {
entry:
  %i = call i64 @index()
  %in = icmp slt i64 %i, %extent
  br i1 %in, label %body, label %done
body:
  %xp = load ptr, ptr %bufs
  %yslot = getelementptr ptr, ptr %bufs, i64 1
  %yp = load ptr, ptr %yslot
  %t = load i64, ptr %dims
  %tf = sitofp i64 %t to float
  %xa = getelementptr float, ptr %xp, i64 %i
  %x = load float, ptr %xa
  %x2 = fmul float %x, 2.0
  %y = fadd float %x2, %tf
  %ya = getelementptr float, ptr %yp, i64 %i
  store float %y, ptr %ya
  br label %done
done:
  ret void
}

define void @check(ptr %bufs, ptr %dims, i64 %extent, ptr %status) {
entry:
  %i = call i64 @index()
  %in = icmp slt i64 %i, %extent
  br i1 %in, label %body, label %done
body:
  %xp = load ptr, ptr %bufs
  %xa = getelementptr float, ptr %xp, i64 %i
  %x = load float, ptr %xa
  %neg = fcmp olt float %x, 0.0
  br i1 %neg, label %bad, label %done
bad:
  store i64 1, ptr %status
  br label %done
done:
  ret void
}

!nvvm.annotations = !{!0, !1}
!0 = !{ptr @affine, !"kernel", i32 1}
!1 = !{ptr @check, !"kernel", i32 1}
