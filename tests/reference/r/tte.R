# Target trial emulation, clone-censor-weight (issue #11): an independent R implementation of the
# procedure of src/retrocohort/designs/clone_censor_weight.py (same rules, written from the docs,
# docs/target-trial.md), for tests/designs/test_clone_censor_weight.py and the live suite.
# Sourced by tests/reference/make_reference.R (which defines write_reference); the benchmark
# benchmarks/bench_target_trial.py sources it with TTE_PROCEDURE_ONLY set to time ccw_r alone.
suppressPackageStartupMessages(library(survival))

# Weighted, truncated IPCW clone analysis. d: data.frame with time, status (0/1[/2]), start (NA = never),
# the covariates; returns the glm/coxph coefficients, the weights, the clone rows and the estimates.
# tv (optional): time-varying covariates of the censoring model, a long data.frame with row (0-based
# patient position in d), day (start of a grace interval) and one column per covariate, one row per
# patient and interval.
ccw_r <- function(d, grace, delta, horizon, covs, model = "pooled_logistic", stabilised = TRUE,
                  truncate = c(0, 1), competing = FALSE, keep_rows = FALSE, tv = NULL) {
  n <- nrow(d)
  d$id <- seq_len(n)
  beyond <- d$time > horizon
  d$status[beyond] <- 0
  d$time <- pmin(d$time, horizon)
  d$start[!is.na(d$start) & d$start > d$time] <- NA
  started <- !is.na(d$start) & d$start <= grace
  cuts <- seq(0, grace, by = delta)
  if (cuts[length(cuts)] < grace - 1e-9) cuts <- c(cuts, grace)
  cuts[length(cuts)] <- grace
  K <- length(cuts) - 1
  # time to start within the window; a start at the index counts just after it
  d$cz_time <- pmax(ifelse(started, d$start, pmin(d$time, grace)), 1e-8 * grace)
  d$cz_event <- as.integer(started)
  # time-varying values as an array V[patient, interval, covariate]; after the interval holding cz_time
  # (the last one at risk of starting) the value of that interval is carried forward
  tv_names <- if (is.null(tv)) character(0) else setdiff(names(tv), c("row", "day"))
  if (length(tv_names)) {
    V <- array(NA_real_, dim = c(n, K, length(tv_names)))
    k_of_day <- findInterval(tv$day + 1e-9 * grace, cuts)
    for (j in seq_along(tv_names)) V[cbind(tv$row + 1, k_of_day, j)] <- tv[[tv_names[j]]]
    stopifnot(!anyNA(V))
    at_risk_last <- findInterval(d$cz_time, cuts, left.open = TRUE)
    for (k in seq_len(K)) {
      frozen <- k > at_risk_last
      V[frozen, k, ] <- V[cbind(rep(which(frozen), length(tv_names)), rep(at_risk_last[frozen], length(tv_names)),
                                rep(seq_along(tv_names), each = sum(frozen)))]
    }
    add_tv <- function(frame) {  # frame with id and interval (1-based)
      for (j in seq_along(tv_names)) frame[[tv_names[j]]] <- V[cbind(frame$id, frame$interval, j)]
      frame
    }
  } else {
    add_tv <- function(frame) frame
  }
  degree <- min(3, K - 1)
  tnames <- if (degree > 0) paste0("time", seq_len(degree)) else character(0)
  add_time <- function(frame, k) {  # k: 1-based interval; polynomial in the interval's end / grace
    u <- cuts[k + 1] / grace
    for (j in seq_len(degree)) frame[[tnames[j]]] <- u^j
    frame
  }
  if (model == "pooled_logistic") {
    pi_data <- survSplit(Surv(cz_time, cz_event) ~ ., data = d[, c("id", "cz_time", "cz_event", covs)],
                         cut = cuts[-c(1, K + 1)], episode = "interval")
    pi_data <- add_tv(add_time(pi_data, pi_data$interval))
    rhs <- paste(c(covs, tv_names, tnames), collapse = " + ")
    full <- glm(as.formula(paste("cz_event ~", if (nchar(rhs)) rhs else "1")), family = binomial, data = pi_data)
    grid <- d[rep(seq_len(n), each = K), c("id", covs), drop = FALSE]
    grid$interval <- rep(seq_len(K), n)
    grid <- add_tv(add_time(grid, grid$interval))
    p <- matrix(predict(full, newdata = grid, type = "response"), nrow = n, byrow = TRUE)
    unc <- t(apply(1 - p, 1, cumprod))
    if (K == 1) unc <- matrix(unc, ncol = 1)
    coef_full <- coef(full)
    if (stabilised) {
      rhs0 <- if (degree > 0) paste(tnames, collapse = " + ") else "1"
      null <- glm(as.formula(paste("cz_event ~", rhs0)), family = binomial, data = pi_data)
      num <- cumprod(1 - predict(null, newdata = add_time(data.frame(k = seq_len(K)), seq_len(K)),
                                 type = "response"))
      coef_null <- coef(null)
    } else {
      num <- rep(1, K); coef_null <- NULL
    }
  } else if (length(tv_names)) {
    # (start, stop] rows of the time to start at the cuts, each with its interval's value
    cp <- survSplit(Surv(cz_time, cz_event) ~ ., data = d[, c("id", "cz_time", "cz_event", covs)],
                    cut = cuts[-c(1, K + 1)], episode = "interval", start = "tstart")
    cp <- add_tv(cp)
    cfit <- coxph(as.formula(paste("Surv(tstart, cz_time, cz_event) ~", paste(c(covs, tv_names), collapse = " + "))),
                  data = cp, ties = "breslow")
    bh <- basehaz(cfit, centered = FALSE)
    h0 <- sapply(cuts, function(u) { j <- findInterval(u, bh$time); if (j == 0) 0 else bh$hazard[j] })
    b <- coef(cfit)
    lp <- matrix(as.vector(as.matrix(d[, covs, drop = FALSE]) %*% b[covs]), n, K)
    for (j in seq_along(tv_names)) lp <- lp + V[, , j, drop = FALSE][, , 1] * b[tv_names[j]]
    unc <- exp(-t(apply(sweep(exp(lp), 2, diff(h0), `*`), 1, cumsum)))
    if (K == 1) unc <- matrix(unc, ncol = 1)
    coef_full <- coef(cfit)
    if (stabilised) {
      na <- survfit(Surv(cz_time, cz_event) ~ 1, data = d, ctype = 1)
      num <- sapply(cuts[-1], function(u) { j <- findInterval(u, na$time); if (j == 0) 1 else exp(-na$cumhaz[j]) })
    } else num <- rep(1, K)
    coef_null <- NULL
  } else {
    cfit <- coxph(as.formula(paste("Surv(cz_time, cz_event) ~", paste(covs, collapse = " + "))),
                  data = d, ties = "breslow")
    bh <- basehaz(cfit, centered = FALSE)
    h0 <- sapply(cuts[-1], function(u) { j <- findInterval(u, bh$time); if (j == 0) 0 else bh$hazard[j] })
    lp <- as.matrix(d[, covs, drop = FALSE]) %*% coef(cfit)
    unc <- exp(-outer(as.vector(exp(lp)), h0))
    coef_full <- coef(cfit)
    if (stabilised) {
      na <- survfit(Surv(cz_time, cz_event) ~ 1, data = d, ctype = 1)
      num <- sapply(cuts[-1], function(u) { j <- findInterval(u, na$time); if (j == 0) 1 else exp(-na$cumhaz[j]) })
    } else num <- rep(1, K)
    coef_null <- NULL
  }
  # no-start weight of interval k at its middle: sqrt(U_{k-1} U_k) (constant hazard within the interval)
  unc_mid <- sqrt(cbind(1, unc[, -K, drop = FALSE]) * unc)
  num_mid <- sqrt(c(1, num[-K]) * num)
  w_no <- sweep(1 / unc_mid, 2, num_mid, `*`)
  w_start <- (if (stabilised) 1 - num[K] else 1) / (1 - unc[, K])
  # start clones: (0, min(time, grace)] with weight 1; after the window only those who started in it
  first <- data.frame(id = d$id, strategy = 1L, tstart = 0, tstop = pmin(d$time, grace),
                      event = ifelse(d$time <= grace, d$status, 0), w = 1)
  later <- started & d$time > grace
  second <- data.frame(id = d$id[later], strategy = rep(1L, sum(later)), tstart = rep(grace, sum(later)),
                       tstop = d$time[later], event = d$status[later], w = w_start[later])
  # no-start clones: censored at a start within the window, split at every cut (weights change there)
  ns <- data.frame(id = d$id, end = ifelse(started, d$start, d$time), est = ifelse(started, 0, d$status))
  ns <- ns[ns$end > 0, ]
  ns$ev <- as.integer(ns$est > 0)  # Surv() takes 0/1; the code (1 outcome, 2 competing) rides along
  ns <- survSplit(Surv(end, ev) ~ id + est, data = ns, cut = cuts[-1], episode = "interval", start = "tstart")
  ns <- data.frame(id = ns$id, strategy = 0L, tstart = ns$tstart, tstop = ns$end, event = ns$ev * ns$est,
                   w = w_no[cbind(ns$id, pmin(ns$interval, K))])
  rows <- rbind(first, second, ns)
  trunc <- list()
  for (s in c(1L, 0L)) {
    sel <- rows$strategy == s
    b <- quantile(rows$w[sel], truncate, names = FALSE)
    trunc[[as.character(s)]] <- b
    rows$w[sel] <- pmin(pmax(rows$w[sel], b[1]), b[2])
  }
  rows$strategy_f <- factor(rows$strategy, levels = c(1, 0))
  rows$event1 <- as.integer(rows$event == 1)
  cx <- coxph(Surv(tstart, tstop, event1) ~ strategy, data = rows, weights = w, cluster = id)
  risk <- c()
  curves <- list()
  for (s in c(1L, 0L)) {
    sub <- rows[rows$strategy == s, ]
    if (!competing) {
      sf <- survfit(Surv(tstart, tstop, event1) ~ 1, data = sub, weights = w)
      at <- summary(sf, times = horizon, extend = TRUE)
      risk[as.character(s)] <- 1 - at$surv
      ev <- sf$n.event > 0
      curves[[as.character(s)]] <- list(time = sf$time[ev], n_risk = sf$n.risk[ev], n_event = sf$n.event[ev],
                                        risk = 1 - sf$surv[ev])
    } else {
      sf <- survfit(Surv(tstart, tstop, factor(event, levels = 0:2)) ~ 1, data = sub, weights = w, id = id)
      at <- summary(sf, times = horizon, extend = TRUE)
      risk[as.character(s)] <- at$pstate[, 2]
      ev <- sf$n.event[, 2] > 0  # columns are the states "(s0)", "1", "2"
      # (multi-state survfit reports unweighted n.risk, so only the incidence is compared)
      curves[[as.character(s)]] <- list(time = sf$time[ev], risk = sf$pstate[ev, 2])
    }
  }
  out <- list(coef_full = unname(coef_full), coef_names = names(coef_full), coef_null = unname(coef_null),
              numerator = num, truncation_start = trunc[["1"]], truncation_no_start = trunc[["0"]],
              rows_start = sum(rows$strategy == 1), rows_no_start = sum(rows$strategy == 0),
              weight_sum_start = sum(rows$w[rows$strategy == 1]), weight_sum_no_start = sum(rows$w[rows$strategy == 0]),
              risk_start = unname(risk["1"]), risk_no_start = unname(risk["0"]),
              cox_coef = unname(coef(cx)), cox_se = unname(sqrt(diag(vcov(cx)))),
              cox_naive_se = unname(sqrt(diag(cx$naive.var))), curve_start = curves[["1"]],
              curve_no_start = curves[["0"]])
  if (keep_rows) out$rows <- rows[, c("id", "strategy", "tstart", "tstop", "event", "w")]
  out
}

# A grace-window data set with ties on a half-day grid: prognosis x drives both death and the start.
tte_data <- function(n, seed, competing = FALSE) {
  set.seed(seed)
  x <- rnorm(n)
  z <- rbinom(n, 1, 0.4)
  death <- rexp(n, exp(-3 + 0.5 * x - 0.3 * z))
  other <- if (competing) rexp(n, exp(-3.5)) else rep(Inf, n)
  cens <- runif(n, 5, 45)
  time <- pmax(ceiling(pmin(death, other, cens) * 2) / 2, 0.5)
  status <- ifelse(pmin(death, other) <= cens, ifelse(death <= other, 1, 2), 0)
  start <- ifelse(runif(n) < 0.65, round(rexp(n, exp(-0.4 - 0.4 * x + 0.3 * z)) * 4) / 4, NA)
  start[!is.na(start) & start > time] <- NA
  data.frame(time = time, status = status, start = start, x = x, z = z)
}

# As tte_data with two time-varying covariates over the grace intervals of width delta: lact (a random
# walk around the prognosis x) and vaso (0/1, switches on for good). The start hazard of each interval
# depends on that interval's values, so the censoring model needs them. Returns the frame and the long
# table (row 0-based, day = the interval's start).
tte_tv_data <- function(n, seed, grace, delta) {
  set.seed(seed)
  x <- rnorm(n)
  z <- rbinom(n, 1, 0.4)
  death <- rexp(n, exp(-3 + 0.5 * x - 0.3 * z))
  cens <- runif(n, 5, 45)
  time <- pmax(ceiling(pmin(death, cens) * 2) / 2, 0.5)
  status <- as.numeric(death <= cens)
  cuts <- seq(0, grace, by = delta)
  K <- length(cuts) - 1
  lact <- matrix(0, n, K)
  vaso <- matrix(0, n, K)
  lact[, 1] <- 0.6 * x + rnorm(n, 0, 0.5)
  vaso[, 1] <- rbinom(n, 1, 0.2)
  for (k in seq_len(K)[-1]) {
    lact[, k] <- lact[, k - 1] + rnorm(n, 0, 0.4)
    vaso[, k] <- pmax(vaso[, k - 1], rbinom(n, 1, 0.15))
  }
  start <- rep(NA_real_, n)
  for (k in seq_len(K)) {
    p <- plogis(-1.2 - 0.3 * x + 0.8 * lact[, k] - 0.7 * vaso[, k] + 0.3 * z)
    go <- is.na(start) & runif(n) < p
    start[go] <- cuts[k] + ceiling(runif(sum(go)) * delta * 4) / 4  # quarter days, inside (cut_k, cut_k+1]
  }
  later <- is.na(start) & runif(n) < 0.4
  start[later] <- grace + ceiling(rexp(sum(later), 0.5) * 4) / 4
  start[!is.na(start) & start > time] <- NA
  tv <- data.frame(row = rep(seq_len(n) - 1, each = K), day = rep(cuts[-(K + 1)], n),
                   lact = as.vector(t(lact)), vaso = as.vector(t(vaso)))
  list(d = data.frame(time = time, status = status, start = start, x = x, z = z), tv = tv)
}

if (!exists("TTE_PROCEDURE_ONLY")) {
  tv_scenarios <- list(
    tte_tv_pooled = list(n = 400, seed = 21, grace = 2, delta = 0.5, horizon = 30, model = "pooled_logistic",
                         stabilised = TRUE, truncate = c(0, 1), competing = FALSE),
    tte_tv_cox = list(n = 400, seed = 22, grace = 2, delta = 0.5, horizon = 30, model = "cox",
                      stabilised = TRUE, truncate = c(0.01, 0.99), competing = FALSE)
  )
  for (name in names(tv_scenarios)) {
    sc <- tv_scenarios[[name]]
    dd <- tte_tv_data(sc$n, sc$seed, sc$grace, sc$delta)
    v <- ccw_r(dd$d, sc$grace, sc$delta, sc$horizon, c("x", "z"), sc$model, sc$stabilised, sc$truncate,
               sc$competing, tv = dd$tv)
    v$options <- sc[c("grace", "delta", "horizon", "model", "stabilised", "truncate", "competing")]
    call <- sprintf(paste0("time-varying lact, vaso per grace interval (last value at risk carried forward); ",
                           "survSplit(Surv(cz_time, cz_event) ~ ., cut = interior cuts of (0, %g] by %g) + the ",
                           "interval's lact, vaso; %s; survSplit of the no-start clones at every cut; ",
                           "coxph(Surv(tstart, tstop, event1) ~ strategy, weights = w, cluster = id); ",
                           "survfit(Surv(tstart, tstop, event1) ~ 1, weights = w) per strategy, horizon %g"),
                    sc$grace, sc$delta,
                    if (sc$model == "cox") paste0("coxph(Surv(tstart, cz_time, cz_event) ~ x + z + lact + vaso, ",
                                                  "ties = 'breslow') + basehaz(centered = FALSE)")
                    else "glm(cz_event ~ x + z + lact + vaso + time1 + time2 + time3, binomial)",
                    sc$horizon)
    write_reference(name, call, v, data = list(frame = dd$d, time_varying = dd$tv))
  }

  scenarios <- list(
    tte_pooled = list(n = 300, seed = 11, grace = 2, delta = 0.5, horizon = 30, model = "pooled_logistic",
                      stabilised = TRUE, truncate = c(0, 1), competing = FALSE),
    tte_pooled_truncated = list(n = 300, seed = 12, grace = 3, delta = 1, horizon = 20, model = "pooled_logistic",
                                stabilised = FALSE, truncate = c(0.01, 0.99), competing = FALSE),
    tte_cox = list(n = 300, seed = 13, grace = 2, delta = 1, horizon = 30, model = "cox",
                   stabilised = TRUE, truncate = c(0, 1), competing = FALSE),
    tte_competing = list(n = 300, seed = 14, grace = 2, delta = 1, horizon = 30, model = "pooled_logistic",
                         stabilised = TRUE, truncate = c(0.05, 0.95), competing = TRUE)
  )
  for (name in names(scenarios)) {
    sc <- scenarios[[name]]
    d <- tte_data(sc$n, sc$seed, sc$competing)
    v <- ccw_r(d, sc$grace, sc$delta, sc$horizon, c("x", "z"), sc$model, sc$stabilised, sc$truncate,
               sc$competing)
    v$options <- sc[c("grace", "delta", "horizon", "model", "stabilised", "truncate", "competing")]
    call <- sprintf(paste0("survSplit(Surv(cz_time, cz_event) ~ ., cut = interior cuts of (0, %g] by %g); ",
                           "%s; survSplit of the no-start clones at every cut; ",
                           "coxph(Surv(tstart, tstop, event1) ~ strategy, weights = w, cluster = id); ",
                           "survfit(Surv(tstart, tstop, %s) ~ 1, weights = w%s) per strategy, horizon %g"),
                    sc$grace, sc$delta,
                    if (sc$model == "cox") "coxph(Surv(cz_time, cz_event) ~ x + z, ties = 'breslow') + basehaz(centered = FALSE)"
                    else "glm(cz_event ~ x + z + time1 [+ time2 + time3], binomial)",
                    if (sc$competing) "factor(event)" else "event1", if (sc$competing) ", id = id" else "",
                    sc$horizon)
    write_reference(name, call, v, data = d)
  }
}
