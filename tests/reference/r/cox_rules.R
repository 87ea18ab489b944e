# coxph's own rules where they are easy to get wrong (issue #10):
# * the default variance with integer case weights (frequency weights: model-based, no naive.var),
#   on the weighted hand data of Therneau & Grambsch appendix E (R survival's book5/book6 tests);
# * iter.max = 0 and 1 do not warn (coxph checks convergence only when iter.max > 1);
# * cox.zph on fits stopped before the score vanished (iter.max reached, loose eps).
warned <- function(expr) {
  msgs <- character(0)
  value <- withCallingHandlers(expr, warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning")
  })
  list(value = value, warnings = msgs)
}
book <- data.frame(time = c(1, 1, 2, 2, 2, 2, 3, 4, 5), status = c(1, 0, 1, 1, 1, 0, 0, 1, 0),
                   x = c(2, 0, 1, 1, 0, 1, 0, 1, 0), wt = c(1, 2, 3, 4, 3, 2, 1, 2, 1))
fits <- list()
for (ties in c("breslow", "efron")) {
  fit <- coxph(Surv(time, status) ~ x, data = book, weights = wt, ties = ties)
  robust <- coxph(Surv(time, status) ~ x, data = book, weights = wt, ties = ties, robust = TRUE)
  frac <- coxph(Surv(time, status) ~ x, data = book, weights = wt + 0.5, ties = ties)
  iters <- lapply(0:2, function(it) {
    r <- warned(coxph(Surv(time, status) ~ x, data = book, weights = wt, ties = ties, iter.max = it))
    list(iter_max = it, coef = unname(coef(r$value)), var = unname(r$value$var), n_warnings = length(r$warnings))
  })
  fits[[ties]] <- list(coef = unname(coef(fit)), var = unname(fit$var), has_naive_var = !is.null(fit$naive.var),
                       robust_var = unname(robust$var),
                       fractional = list(has_naive_var = !is.null(frac$naive.var), var = unname(frac$var),
                                         naive_var = unname(frac$naive.var)),
                       iterations = iters)
}
write_reference("cox_rules_book_weights",
                paste("coxph(Surv(time, status) ~ x, data = book, weights = wt, ties = ties) for ties in breslow,",
                      "efron; also robust = TRUE, weights = wt + 0.5 and iter.max = 0, 1, 2 (warnings counted)"),
                fits, data = book)

# cox.zph on fits that stopped early; the data are written out with the values
set.seed(3)
n <- 200
zd <- data.frame(trt = rbinom(n, 1, 0.5), x = round(rnorm(n), 6))
tt <- rexp(n, 0.05 * exp(0.6 * zd$trt + 0.4 * zd$x)); cc <- runif(n, 5, 40)
zd$time <- pmax(1, ceiling(pmin(tt, cc))); zd$status <- as.integer(tt <= cc)
zph_of <- function(fit) {
  z <- cox.zph(fit, transform = "km")
  list(coef = unname(coef(fit)), iter = fit$iter, rows = rownames(z$table), chisq = unname(z$table[, "chisq"]),
       p = unname(z$table[, "p"]))
}
runs <- list(
  iter_max_1 = zph_of(suppressWarnings(coxph(Surv(time, status) ~ trt + x, data = zd, iter.max = 1))),
  iter_max_2 = zph_of(suppressWarnings(coxph(Surv(time, status) ~ trt + x, data = zd, iter.max = 2))),
  eps_1e_3 = zph_of(coxph(Surv(time, status) ~ trt + x, data = zd, control = coxph.control(eps = 1e-3))),
  converged = zph_of(coxph(Surv(time, status) ~ trt + x, data = zd))
)
write_reference("cox_rules_zph_early_stop",
                paste("cox.zph(coxph(Surv(time, status) ~ trt + x, data = zd, <iter.max = 1 | iter.max = 2 |",
                      "control = coxph.control(eps = 1e-3) | defaults>), transform = 'km')"),
                runs, data = zd)

# monotone likelihood: the exposed all leave follow-up (early deaths, censored at day 5) before any
# unexposed death, so the coefficient runs to infinity; coxph stops when the log-likelihood is flat
# and warns "Loglik converged before variable 1"
set.seed(11)
mono <- data.frame(exposed = rep(c(1, 0), c(16, 64)), x = round(rnorm(80), 6))
mono$time <- ifelse(mono$exposed == 1, ifelse(seq_len(80) %% 2 == 0, 2, 5), 5 + ceiling(rexp(80, 1 / 20)))
mono$status <- ifelse(mono$exposed == 1, as.integer(seq_len(80) %% 2 == 0), rbinom(80, 1, 0.7))
mono_runs <- lapply(list(exposed = status ~ exposed, adjusted = status ~ exposed + x), function(f) {
  r <- warned(coxph(update(f, Surv(time, status) ~ .), data = mono))
  list(coef = unname(coef(r$value)), iter = r$value$iter, loglik = r$value$loglik, warnings = r$warnings)
})
write_reference("cox_rules_monotone",
                "coxph(Surv(time, status) ~ exposed [+ x], data = mono): monotone likelihood in exposed",
                mono_runs, data = mono)
