/* The argument layout of the fused update kernels and the meaning of each optimizer's per-step
 * scalars c0..c7, declared once. Preprocessor lines only, valid C and OpenCL C: the OpenCL
 * backend puts this file before cl/common.cl in every kernel program; the C side includes it
 * through src/backend/backend_internal.h. From these lists come
 *   - the kernel's argument list (UPDATE_ARGS in cl/common.cl) and the host's count of its
 *     arguments (CLOPT__UPDATE_NARGS in backend_internal.h),
 *   - the indices a class's launch fills (l->scalars[SC_name], src/optim/<class>.c),
 *   - an element-wise rule's names for them (CLOPT__RULE_SCALARS, src/optim/optim_internal.h),
 *   - the kernel's names for its scalars (SCALARS(K) in cl/common.cl: const real name = cN),
 *   - the host kernel's (HOST_SCALARS(K) in src/backend/host/host_internal.h).
 * tests/replay/reference.py is an independent Python reference on purpose and does not use it.
 *
 * A list is X(index, name, meaning); S() separates entries where a separator is needed. */
#ifndef CLOPT_SCALARS_CL
#define CLOPT_SCALARS_CL

/* The buffer arguments every fused update kernel takes first: variable, gradient and slot
 * buffers, the slot stride (slot kind k at s + k*ss), the segment table with the launch's
 * first entry and its number of entries, the per-segment reals. */
#define CLOPT_UPDATE_BUFFER_ARGS(X, S)                                                        \
    X(global store_t *, w) S() X(global const store_t *, g) S() X(global store_t *, s) S()    \
    X(ulong, ss) S() X(global const segment *restrict, table) S() X(uint, tbase) S()          \
    X(uint, ntable) S() X(global const real *, seg)
/* Then the optimizer's per-step scalars c0..c7 (their meaning: the lists below) and the apply
 * pipeline's q0..q3 (1/loss_scale_factor, 1/accumulation steps, clipvalue, weight_decay*lr). */
#define CLOPT_STEP_SCALAR_ARGS(X, S) \
    X(real, c0) S() X(real, c1) S() X(real, c2) S() X(real, c3) S() X(real, c4) S() X(real, c5) \
    S() X(real, c6) S() X(real, c7)
#define CLOPT_PIPE_SCALAR_ARGS(X, S) X(real, q0) S() X(real, q1) S() X(real, q2) S() X(real, q3)

/* ---- the optimizers: the one list a new optimizer joins ---- */

/* Every built-in optimizer class, in the order clopt lists them: src/optim/<name>.c defines
 * clopt__<name>_class (src/optim/registry.c makes the table from this list). Lamb is not in
 * Keras's optimizers.get lookup (Keras cannot deserialize it by name); clopt resolves it. */
#define CLOPT_BUILTIN_CLASSES(X)                                                              \
    X(sgd) X(adam) X(loss_scale) X(rmsprop) X(adagrad) X(adadelta) X(adamax) X(adamw)        \
    X(nadam) X(ftrl) X(lion) X(lamb) X(adafactor) X(schedule_free_adamw) X(muon)

/* The built-in updates with a kernel file of their own: "<name>" of cl/<name>.cl, and its host
 * reference clopt__host_<name> in src/backend/host/kernels_<name>.c (host_kernels.c makes the
 * host backend's table from this list). Most classes have none: their update is an element-wise
 * rule (clopt__elementwise, src/optim/optim_internal.h), the form a program's class takes, from
 * which the kernel is made. ScheduleFreeAdamW keeps its file: it reads back the slots it has
 * just stored, rounded to their storage format, which a rule (slots held in registers between
 * one load and one store) does not express. */
#define CLOPT_ELEMENTWISE_UPDATES(X) X(schedule_free_adamw)

/* ---- each update's c0..c7 ---- */

/* SGD (src/optim/sgd.c's rules). */
#define CLOPT_SCALARS_SGD(X) X(0, lr, "learning rate") X(1, momentum, "momentum")

/* Adam (src/optim/adam.c's rules), AdamW (the same rules). */
#define CLOPT_SCALARS_ADAM(X)                                                                 \
    X(0, alpha, "lr*sqrt(1-beta_2^t)/(1-beta_1^t), op by op in the variable's dtype")        \
    X(1, one_minus_beta_1, "1-beta_1") X(2, one_minus_beta_2, "1-beta_2")                    \
    X(3, epsilon, "epsilon")

/* RMSprop (src/optim/rmsprop.c's rules). */
#define CLOPT_SCALARS_RMSPROP(X)                                                              \
    X(0, lr, "learning rate") X(1, rho, "rho") X(2, one_minus_rho, "1-rho")                   \
    X(3, momentum, "momentum") X(4, epsilon, "epsilon")

/* Adagrad (src/optim/adagrad.c's rule). */
#define CLOPT_SCALARS_ADAGRAD(X) X(0, lr, "learning rate") X(1, epsilon, "epsilon")

/* Adadelta (src/optim/adadelta.c's rule). */
#define CLOPT_SCALARS_ADADELTA(X)                                                             \
    X(0, lr, "learning rate") X(1, rho, "rho") X(2, one_minus_rho, "1-rho")                   \
    X(3, epsilon, "epsilon")

/* Adamax (src/optim/adamax.c's rule). */
#define CLOPT_SCALARS_ADAMAX(X)                                                               \
    X(0, lr_t, "lr/(1-beta_1^t), op by op in the variable's dtype")                           \
    X(1, one_minus_beta_1, "1-beta_1") X(2, beta_2, "beta_2") X(3, epsilon, "epsilon")

/* Nadam (src/optim/nadam.c's rule): u_t = beta_1*(1-0.5*0.96^t), P_t the optimizer's u_product after this
 * step's update (src/optim/nadam.c). */
#define CLOPT_SCALARS_NADAM(X)                                                                \
    X(0, lr, "learning rate") X(1, one_minus_beta_1, "1-beta_1")                              \
    X(2, one_minus_beta_2, "1-beta_2") X(3, epsilon, "epsilon")                               \
    X(4, m_coef, "u_{t+1}/(1-P_{t+1})") X(5, g_coef, "(1-u_t)/(1-P_t)")                       \
    X(6, v_coef, "1/(1-beta_2^t)")

/* Ftrl (src/optim/ftrl.c's rules). */
#define CLOPT_SCALARS_FTRL(X)                                                                 \
    X(0, lr, "learning rate") X(1, neg_power, "-learning_rate_power")                         \
    X(2, l2_twice, "2*(l2 + beta/(2*lr))") X(3, l1, "l1")                                     \
    X(4, shrinkage_twice, "2*l2_shrinkage")

/* Lion (src/optim/lion.c's rule). */
#define CLOPT_SCALARS_LION(X)                                                                 \
    X(0, lr, "learning rate") X(1, beta_1, "beta_1") X(2, one_minus_beta_1, "1-beta_1")       \
    X(3, beta_2, "beta_2") X(4, one_minus_beta_2, "1-beta_2")

/* Lamb (cl/lamb.cl: stats and lamb). */
#define CLOPT_SCALARS_LAMB(X)                                                                 \
    X(0, one_minus_beta_1, "1-beta_1") X(1, one_minus_beta_2, "1-beta_2")                     \
    X(2, m_corr, "1-beta_1^t") X(3, v_corr, "1-beta_2^t") X(4, epsilon, "epsilon")            \
    X(5, lr, "learning rate")

/* ScheduleFreeAdamW (cl/schedule_free_adamw.c). */
#define CLOPT_SCALARS_SFADAMW(X)                                                              \
    X(0, lr, "learning rate after warm-up") X(1, one_minus_beta_2, "1-beta_2")                \
    X(2, v_corr, "1-beta_2^t") X(3, epsilon, "epsilon") X(4, one_minus_beta_1, "1-beta_1")   \
    X(5, beta_1, "beta_1") X(6, weight, "1/t") X(7, one_minus_weight, "1-1/t")

/* Adafactor (cl/adafactor.cl): the fused passes read c0..c2; c3..c5 are the finishing
 * segment pass's, which takes them as its c0..c2 (CLOPT_SCALARS_ADAFACTOR_FINISH). */
#define CLOPT_SCALARS_ADAFACTOR(X)                                                            \
    X(0, beta_2_t, "1-t^beta_2_decay") X(1, one_minus_beta_2_t, "1-beta_2_t")      \
    X(2, epsilon_1, "epsilon_1") X(3, rho, "min(lr, 1/sqrt(t))") X(4, epsilon_2, "epsilon_2") \
    X(5, clip_threshold, "clip_threshold")
#define CLOPT_SCALARS_ADAFACTOR_FINISH(X)                                                     \
    X(0, rho, "min(lr, 1/sqrt(t))") X(1, epsilon_2, "epsilon_2")                              \
    X(2, clip_threshold, "clip_threshold")

/* Muon (cl/muon.cl): stats (the AdamW path's update and the Muon path's momentum) ... */
#define CLOPT_SCALARS_MUON(X)                                                                 \
    X(0, alpha, "adam_lr*sqrt(1-beta_2^t)/(1-beta_1^t)") X(1, one_minus_beta_1, "1-beta_1")  \
    X(2, one_minus_beta_2, "1-beta_2") X(3, epsilon, "epsilon")                               \
    X(4, momentum_minus_1, "momentum-1") X(5, momentum, "momentum")                           \
    X(6, lr, "the Muon path's learning rate (for apply; stats does not read it)")
/* ... and apply (w -= ((lr*x)*sqrt(max(rows, cols)))*rms_rate). */
#define CLOPT_SCALARS_MUON_APPLY(X)                                                           \
    X(0, lr, "learning rate") X(1, lr_adjust, "1: scale by sqrt(max(rows, cols)); 0: by 1")   \
    X(2, rms_rate, "rms_rate (1 when null)")

/* The apply pipeline's EMA pass (cl/pipeline.cl: ema; src/optim/apply.c's run_pass sets c0). */
#define CLOPT_SCALARS_EMA(X) X(0, ema_momentum, "ema_momentum")

/* Every list, for the C side's checks (backend_internal.h). */
#define CLOPT_SCALAR_LISTS(L)                                                                 \
    L(SGD) L(ADAM) L(RMSPROP) L(ADAGRAD) L(ADADELTA) L(ADAMAX) L(NADAM) L(FTRL) L(LION)       \
    L(LAMB) L(SFADAMW) L(ADAFACTOR) L(ADAFACTOR_FINISH) L(MUON) L(MUON_APPLY) L(EMA)

#endif
