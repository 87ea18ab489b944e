# MatchIt 4.5.1 runs for tests/matching/test_matchit_round3.py: variable-ratio matching, summary(standardize =
# FALSE), s.weights in the propensity model, reestimate = TRUE.
#
# Variable ratio (min.controls / max.controls) is refused by MatchIt with a distance matrix and goes through
# its distance-vector kernel, whose two 4.5.1 defects (integer abs(), the 0/1-based index slip in rounds after
# the first; see matchit_matrix.R) change the sets. `with_matrix_kernel()` therefore runs matchit() itself
# (MatchIt's allotment of matches per unit, processing order, weights, subclasses, summary) with only the
# innermost kernel call swapped for MatchIt's own distance-matrix kernel (nn_matchC with the |difference|
# matrix), which has neither defect. That kernel breaks exact ties by data order, so the tests use distances
# without ties.

with_matrix_kernel <- function(expr) {
  ns <- asNamespace("MatchIt")
  original <- get("nn_matchC_dispatch", envir = ns)
  swapped <- function(treat, ord, ratio, discarded, reuse.max, distance, distance_mat, ex, caliper.dist,
                      caliper.covs, caliper.covs.mat, mahcovs, antiexactcovs, unit.id, verbose) {
    if (is.null(distance_mat) && is.null(mahcovs)) {
      dm <- abs(outer(distance[treat == 1], distance[treat == 0], "-"))
      return(MatchIt:::nn_matchC(treat, ord, ratio, discarded, reuse.max, NULL, dm, ex, caliper.dist,
                                 caliper.covs, caliper.covs.mat, NULL, antiexactcovs, unit.id, verbose))
    }
    original(treat, ord, ratio, discarded, reuse.max, distance, distance_mat, ex, caliper.dist,
             caliper.covs, caliper.covs.mat, mahcovs, antiexactcovs, unit.id, verbose)
  }
  unlockBinding("nn_matchC_dispatch", ns)
  assign("nn_matchC_dispatch", swapped, envir = ns)
  on.exit({
    assign("nn_matchC_dispatch", original, envir = ns)
    lockBinding("nn_matchC_dispatch", ns)
  })
  force(expr)
}

tab3 <- function(x) list(rows = rownames(x), cols = colnames(x), values = unname(as.matrix(x)))

# One match (any matchit() arguments in `...`) and what the tests compare: sets, weights, subclass, nn, both
# summaries standardized and not.
match_case <- function(df, rhs, dist, ..., matrix_kernel = TRUE, addl = NULL) {
  suppressPackageStartupMessages(library(MatchIt))
  rownames(df) <- as.character(seq_len(nrow(df)))
  f <- as.formula(paste("treat ~", rhs))
  run <- function() suppressWarnings(matchit(f, data = df, method = "nearest", distance = dist, ...))
  m <- if (matrix_kernel) with_matrix_kernel(run()) else run()
  addlf <- if (is.null(addl)) NULL else reformulate(addl)
  s <- summary(m, data = df, addlvariables = addlf)
  u <- summary(m, data = df, standardize = FALSE, addlvariables = addlf)
  ui <- summary(m, data = df, standardize = FALSE, interactions = TRUE)
  mm <- m$match.matrix
  list(
    focal = as.integer(rownames(mm)),
    match_matrix = matrix(as.integer(mm), nrow = nrow(mm)),
    weights = unname(m$weights),
    weights17 = sprintf("%.17g", unname(m$weights)),  # toJSON(digits = NA) keeps 15 digits; these are exact
    subclass = if (is.null(m$subclass)) NULL else as.integer(as.character(m$subclass)),
    discarded = unname(m$discarded),
    distance = if (is.null(m$distance)) NULL else unname(m$distance),
    nn = tab3(s$nn),
    sum_all = tab3(s$sum.all),
    sum_matched = tab3(s$sum.matched),
    raw_all = tab3(u$sum.all),
    raw_matched = tab3(u$sum.matched),
    raw_inter_matched = tab3(ui$sum.matched),
    md_rows = as.integer(rownames(match.data(m, data = df))),
    md_weights = unname(match.data(m, data = df)$weights),
    gm_ids = as.integer(as.character(get_matches(m, data = df)$id)),
    gm_weights = unname(get_matches(m, data = df)$weights),
    raw_reduction = tab3(summary(m, data = df, standardize = FALSE, improvement = TRUE, addlvariables = addlf)$reduction),
    caliper = if (is.null(m$caliper)) NULL else unname(m$caliper)
  )
}

# MatchIt 4.5.1's robust_mahalanobis fails on every call (its transform_covariates takes det() of `var`, the
# user's covariance argument, NULL, instead of the rank covariance `var_r` it has just computed: "no applicable
# method for 'determinant' applied to an object of class NULL"). `fix_robust()` makes that one substitution in
# MatchIt's own function (det / solve / generalized_inverse of var_r in the robust branch), nothing else.
fix_robust <- function() {
  ns <- asNamespace("MatchIt")
  src <- deparse(get("transform_covariates", envir = ns))
  i <- grep('method == "robust_mahalanobis"', src, fixed = TRUE)
  j <- grep('method == "euclidean"', src, fixed = TRUE)
  seg <- i:(j - 1)
  before <- src
  for (f in c("det", "solve", "generalized_inverse")) {
    src[seg] <- gsub(paste0(f, "(var)"), paste0(f, "(var_r)"), src[seg], fixed = TRUE)
  }
  fixed <- eval(parse(text = src))
  environment(fixed) <- ns
  unlockBinding("transform_covariates", ns)
  assign("transform_covariates", fixed, envir = ns)
  lockBinding("transform_covariates", ns)
  sum(src != before)  # lines changed: 3 (det, solve, generalized_inverse)
}

# MatchIt's tests/testthat/test-method_nearest.R, "distance vector, mah vars, and distance matrix yield
# identical results": its data (set.seed(1234), n = 1000), and for each option set MatchIt's match with the
# distance vector d$p, run through the distance-matrix kernel (with_matrix_kernel; 4.5.1's vector kernel
# truncates differences to integers, and p < 0.4, so it would pair arbitrarily).
nearest_grid_data <- function() {
  set.seed(1234)
  n <- 1e3
  p <- runif(n, 0, .4)
  x <- runif(n)
  g <- sample(1:5, n, TRUE)
  a <- rbinom(n, 1, p)
  u <- 1:n; u[a == 0] <- sample(u[a == 0][1:round(sum(a == 0)/5)], sum(a == 0), replace = TRUE)
  dis <- as.logical(rbinom(n, 1, .1))
  d <- data.frame(p, x, a, g, u, dis)
  d$p_ <- d$p
  d
}

nearest_grid_case <- function(d, ...) {
  suppressPackageStartupMessages(library(MatchIt))
  rownames(d) <- as.character(seq_len(nrow(d)))
  m <- with_matrix_kernel(suppressWarnings(matchit(a ~ p + p_, data = d, distance = d$p, ...)))
  mm <- m$match.matrix
  list(
    focal = as.integer(rownames(mm)),
    match_matrix = matrix(as.integer(mm), nrow = nrow(mm)),
    weights = unname(m$weights),
    weights17 = sprintf("%.17g", unname(m$weights)),
    subclass = if (is.null(m$subclass)) NULL else as.integer(as.character(m$subclass)),
    discarded = unname(m$discarded),
    nn = tab3(summary(m)$nn)
  )
}

# MatchIt's tests/testthat/test-nearest_snapshots.R, ported: the same data and options, MatchIt 4.5.1's match
# made live. A propensity-score distance is given as a vector (tie-broken, see the test module) and run through
# the distance-matrix kernel; covariate distances, mahvars and matrices take MatchIt's own paths unchanged.
# kernel = "vector": matchit() unchanged, a vector distance scaled by 2^k (matchit_matrix.R; ratio 1 only) -- for
# unit.id, whose meaning differs between 4.5.1's kernels (see test_matchit_snapshots_port.py).
snap_case <- function(df, rhs, dist, ..., kernel = "matrix") {
  suppressPackageStartupMessages(library(MatchIt))
  rownames(df) <- as.character(seq_len(nrow(df)))
  f <- as.formula(paste("treat ~", rhs))
  run <- function() suppressWarnings(matchit(f, data = df, method = "nearest", distance = dist, ...))
  if (kernel == "vector") {
    dist <- dist * 2^floor(log2(2^29 / max(abs(dist))))
    m <- run()
  } else {
    m <- with_matrix_kernel(run())
  }
  mm <- m$match.matrix
  list(
    focal = as.integer(rownames(mm)),
    match_matrix = matrix(as.integer(mm), nrow = nrow(mm)),
    weights = unname(m$weights),
    subclass = if (is.null(m$subclass)) NULL else as.integer(as.character(m$subclass)),
    discarded = unname(m$discarded),
    nn = tab3(summary(m)$nn)
  )
}
