# Fine-Gray reference fixtures: cmprsk::crr (and survival::finegray + coxph
# as a cross-check on untied data). Sourced by tests/reference/make_reference.R,
# which defines write_reference(). Input data are embedded in each JSON so
# the Python tests fit exactly the same rows.

crr_values <- function(fit) {
  list(
    coef = unname(fit$coef),
    var = unname(fit$var),
    inf = unname(fit$inf),
    loglik = fit$loglik,
    loglik_null = fit$loglik.null,
    converged = fit$converged,
    uftime = fit$uftime,
    bfitj = fit$bfitj,
    n = fit$n
  )
}

# --- mgus2: progression to plasma-cell malignancy (1) vs death (2) ---------
# Competing-risks coding as in survival's "compete" vignette. Rows with a
# missing covariate (hgb) are removed explicitly before the fit so that both
# sides fit the same rows (crr would drop them silently via na.omit).
mg <- survival::mgus2
mg$etime <- ifelse(mg$pstat == 0, mg$futime, mg$ptime)
mg$event <- ifelse(mg$pstat == 0, 2 * mg$death, 1)
mg <- mg[complete.cases(mg[, c("etime", "event", "age", "sex", "hgb")]), c("etime", "event", "age", "sex", "hgb")]
mg$sex <- as.character(mg$sex)
cov_mg <- model.matrix(~ age + sex + hgb, data = mg)[, -1]
fit_mg <- crr(mg$etime, mg$event, cov_mg, failcode = 1, cencode = 0)
profiles_mg <- data.frame(age = c(60, 80), sex = c("F", "M"), hgb = c(13, 11))
pred_mg <- predict(fit_mg, model.matrix(~ age + sex + hgb, data = rbind(mg[1:2, c("age", "sex", "hgb")], profiles_mg))[-(1:2), -1])
vals <- crr_values(fit_mg)
vals$terms <- colnames(cov_mg)
vals$profiles <- profiles_mg
vals$predict <- unname(unclass(pred_mg))
vals$n_missing_removed <- sum(!complete.cases(survival::mgus2[, c("age", "sex", "hgb")]))
write_reference(
  "finegray_mgus2",
  "crr(etime, event, model.matrix(~ age + sex + hgb)[, -1], failcode = 1, cencode = 0) on mgus2 complete cases; predict(fit, profiles)",
  vals,
  data = mg
)
# Death (cause 2) as the event of interest, same data.
fit_mg2 <- crr(mg$etime, mg$event, cov_mg, failcode = 2, cencode = 0)
vals2 <- crr_values(fit_mg2)
vals2$terms <- colnames(cov_mg)
write_reference(
  "finegray_mgus2_death",
  "crr(etime, event, model.matrix(~ age + sex + hgb)[, -1], failcode = 2, cencode = 0) on mgus2 complete cases",
  vals2,
  data = mg
)

# --- random data with whole-day ties, a binary and a categorical covariate ---
set.seed(20261125)
n <- 600
ties <- data.frame(
  age = round(rnorm(n, 65, 12), 1),
  treated = rbinom(n, 1, 0.45),
  stage = sample(c("I", "II", "III"), n, replace = TRUE, prob = c(0.5, 0.3, 0.2))
)
lp <- 0.02 * (ties$age - 65) - 0.4 * ties$treated + ifelse(ties$stage == "III", 0.6, ifelse(ties$stage == "II", 0.3, 0))
t_event <- ceiling(rexp(n, exp(lp) / 40))
cause <- ifelse(runif(n) < 0.55, 1, 2)
t_cens <- ceiling(rexp(n, 1 / 60))
ties$time <- pmin(t_event, t_cens)
# status codes 0 (censored), 1 (event of interest), 2 (competing); ties of
# censorings with events on the same day are kept (censoring wins only if strictly earlier)
ties$status <- ifelse(t_cens < t_event, 0, cause)
cov_ties <- model.matrix(~ age + treated + stage, data = ties)[, -1]
fit_ties <- crr(ties$time, ties$status, cov_ties)
vals <- crr_values(fit_ties)
vals$terms <- colnames(cov_ties)
fit_ties_tight <- crr(ties$time, ties$status, cov_ties, gtol = 1e-12, maxiter = 50)
vals$coef_tight <- unname(fit_ties_tight$coef)
vals$var_tight <- unname(fit_ties_tight$var)
fit_ties2 <- crr(ties$time, ties$status, cov_ties, failcode = 2, cencode = 0)
vals$coef_cause2 <- unname(fit_ties2$coef)
vals$var_cause2 <- unname(fit_ties2$var)
profiles_ties <- data.frame(age = c(50, 70), treated = c(0, 1), stage = c("I", "III"))
pp <- cbind(profiles_ties$age, profiles_ties$treated, profiles_ties$stage == "II", profiles_ties$stage == "III")
vals$profiles <- profiles_ties
vals$predict <- unname(unclass(predict(fit_ties, pp)))
vals$n_tied_event_censor_days <- length(intersect(ties$time[ties$status == 0], ties$time[ties$status != 0]))
# survival::finegray + weighted coxph on the same tied data: documents that
# this route differs from crr when times are tied (we match crr).
ties$status_f <- factor(ties$status, 0:2, c("censor", "event", "competing"))
fg_ties <- finegray(Surv(time, status_f) ~ age + treated + stage, data = ties, etype = "event")
cx_ties <- coxph(Surv(fgstart, fgstop, fgstatus) ~ age + treated + stage, data = fg_ties, weights = fgwt,
                 control = coxph.control(eps = 1e-10, iter.max = 50))
vals$finegray_coxph_coef <- unname(coef(cx_ties))
ties$status_f <- NULL
write_reference(
  "finegray_ties",
  "crr(time, status, model.matrix(~ age + treated + stage)[, -1]) (also gtol = 1e-12, maxiter = 50; failcode = 2); predict(fit, profiles)",
  vals,
  data = ties
)

# --- p = 10, whole-day ties, recoded status (cause 3, censoring 9) -------------
set.seed(7)
n <- 1500
p10 <- as.data.frame(matrix(rnorm(n * 8), n, 8, dimnames = list(NULL, paste0("x", 1:8))))
p10$b1 <- rbinom(n, 1, 0.3)
p10$b2 <- rbinom(n, 1, 0.6)
beta <- c(0.3, -0.2, 0.1, 0, 0.25, -0.1, 0.05, 0.15, 0.4, -0.3)
lp <- as.matrix(p10) %*% beta
t_event <- ceiling(rexp(n, exp(lp) / 30))
t_cens <- ceiling(runif(n, 5, 90))
cause <- sample(c(3, 4), n, replace = TRUE, prob = c(0.6, 0.4))
p10$time <- pmin(t_event, t_cens)
p10$status <- ifelse(t_cens < t_event, 9, cause)
cov_p10 <- as.matrix(p10[, c(paste0("x", 1:8), "b1", "b2")])
fit_p10 <- crr(p10$time, p10$status, cov_p10, failcode = 3, cencode = 9)
vals <- crr_values(fit_p10)
vals$terms <- colnames(cov_p10)
write_reference(
  "finegray_p10",
  "crr(time, status, cbind(x1..x8, b1, b2), failcode = 3, cencode = 9)",
  vals,
  data = p10
)

# --- clusters (matched sets of 3), untied continuous times --------------------
# crr has no cluster option: the fixture gives crr's var, which our cluster
# variance must reproduce with one subject per cluster; and survival::finegray
# + coxph(weights = fgwt) as a cross-check of the coefficients on untied data
# (its cluster/robust SE omits the censoring term, so only coef is compared).
set.seed(99)
n_sets <- 200
cl <- data.frame(set_id = rep(seq_len(n_sets), each = 3))
n <- nrow(cl)
frailty <- rep(rnorm(n_sets, 0, 0.5), each = 3)
cl$treated <- rep(c(1, 0, 0), n_sets)
cl$score <- rnorm(n)
t_event <- rexp(n, exp(-0.5 * cl$treated + 0.3 * cl$score + frailty) / 20)
t_cens <- runif(n, 0, 60)
cause <- ifelse(runif(n) < 0.5, 1, 2)
cl$time <- pmin(t_event, t_cens)
cl$status <- ifelse(t_cens < t_event, 0, cause)
fit_cl <- crr(cl$time, cl$status, cbind(cl$treated, cl$score))
vals <- crr_values(fit_cl)
vals$terms <- c("treated", "score")
fit_cl_tight <- crr(cl$time, cl$status, cbind(cl$treated, cl$score), gtol = 1e-12, maxiter = 50)
vals$coef_tight <- unname(fit_cl_tight$coef)
cl$status_f <- factor(cl$status, 0:2, c("censor", "event", "competing"))
fg <- finegray(Surv(time, status_f) ~ ., data = cl[, c("time", "status_f", "treated", "score", "set_id")], etype = "event")
cx <- coxph(Surv(fgstart, fgstop, fgstatus) ~ treated + score, data = fg, weights = fgwt, cluster = set_id,
            control = coxph.control(eps = 1e-10, iter.max = 50))
vals$finegray_coxph_coef <- unname(coef(cx))
vals$finegray_coxph_robust_var <- unname(cx$var)
cl$status_f <- NULL
write_reference(
  "finegray_clusters",
  "crr(time, status, cbind(treated, score)) on untied times in matched sets of 3; finegray() + coxph(Surv(fgstart, fgstop, fgstatus) ~ treated + score, weights = fgwt, cluster = set_id)",
  vals,
  data = cl
)

# --- mgus2 (whole-month ties): survival::finegray + coxph against crr, both causes ---
# Backs the documented caveat that with tied times the finegray + weighted
# coxph route is a different estimator from crr's (which we match). Both
# sides are run to the exact maximum (crr gtol = 1e-12, coxph eps = 1e-10).
vals <- list(terms = colnames(cov_mg))
mg$status_f <- factor(mg$event, 0:2, c("censor", "progression", "death"))
for (cause in 1:2) {
  f_tight <- crr(mg$etime, mg$event, cov_mg, failcode = cause, cencode = 0, gtol = 1e-12, maxiter = 50)
  fg_mg <- finegray(Surv(etime, status_f) ~ age + sex + hgb, data = mg, etype = c("progression", "death")[cause])
  cx_mg <- coxph(Surv(fgstart, fgstop, fgstatus) ~ age + sex + hgb, data = fg_mg, weights = fgwt,
                 control = coxph.control(eps = 1e-10, iter.max = 50))
  vals[[paste0("cause", cause)]] <- list(crr_coef_tight = unname(f_tight$coef), crr_converged = f_tight$converged,
                                         finegray_coxph_coef = unname(coef(cx_mg)))
}
mg$status_f <- NULL
vals$n_distinct_times <- length(unique(mg$etime))
write_reference(
  "finegray_mgus2_finegray_coxph",
  "mgus2 complete cases, cause 1 and 2: crr(etime, event, model.matrix(~ age + sex + hgb)[, -1], failcode = cause, gtol = 1e-12, maxiter = 50); finegray(Surv(etime, factor(event)) ~ age + sex + hgb, etype = cause) + coxph(Surv(fgstart, fgstop, fgstatus) ~ age + sex + hgb, weights = fgwt, eps = 1e-10)",
  vals,
  data = mg
)

# --- case weights (IPTW-like, ATT), untied continuous times ---------------------
# survival::finegray(..., weights = w) multiplies the case weight into fgwt and
# takes the censoring weights from the UNWEIGHTED Kaplan-Meier (checked here:
# rebuilding fgwt from survfit() without weights reproduces it, fgwt_rebuilt_gap).
# fine_gray(weights =) offers both: censoring_km = "unweighted" is that route;
# the default "weighted" takes G from survfit(..., weights = w), reproduced in R
# by recomputing fgwt on the same expanded rows. Each route: weighted coxph with
# cluster = id (robust variance = score residuals only, no censoring term) and
# survfit(fit, newdata = profiles) for the predicted cumulative incidence.
set.seed(31415)
n <- 300
wd <- data.frame(x = rnorm(n))
ps <- plogis(0.8 * wd$x - 0.3)
wd$treated <- rbinom(n, 1, ps)
wd$w <- ifelse(wd$treated == 1, 1, ps / (1 - ps))
t_event <- rexp(n, exp(-0.5 * wd$treated + 0.4 * wd$x) / 20)
t_cens <- runif(n, 0, 50)
wd$time <- pmin(t_event, t_cens)
wd$status <- ifelse(t_cens < t_event, 0, ifelse(runif(n) < 0.55, 1, 2))
wd$id <- seq_len(n)
wd$status_f <- factor(wd$status, 0:2, c("censor", "event", "competing"))
fg_w <- finegray(Surv(time, status_f) ~ treated + x + id, data = wd, etype = "event", weights = w)
own_time <- wd$time[match(fg_w$id, wd$id)]
censoring_weight <- function(km_weights) {
  km <- survfit(Surv(time, status == 0) ~ 1, data = wd, weights = km_weights)
  G <- stepfun(km$time, c(1, km$surv))
  # rows of the subject's own follow-up (fgstart < T) carry its case weight alone
  fg_w[["(weights)"]] * ifelse(fg_w$fgstart < own_time, 1, G(fg_w$fgstart) / G(own_time))
}
profiles_w <- data.frame(treated = c(0, 1), x = c(-0.5, 1))
times_w <- sort(unique(wd$time[wd$status == 1]))
fit_route <- function(wt) {
  fg_w$route_wt <- wt
  cx <- coxph(Surv(fgstart, fgstop, fgstatus) ~ treated + x, data = fg_w, weights = route_wt, cluster = id,
              control = coxph.control(eps = 1e-14, iter.max = 100))
  list(coef = unname(coef(cx)), robust_var = unname(cx$var),
       surv = unname(summary(survfit(cx, newdata = profiles_w), times = times_w)$surv))
}
vals <- list(
  fgwt_rebuilt_gap = max(abs(censoring_weight(rep(1, n)) - fg_w$fgwt)),
  unweighted = fit_route(fg_w$fgwt),
  weighted = fit_route(censoring_weight(wd$w)),
  profiles = profiles_w, times = times_w
)
wd$status_f <- NULL
write_reference(
  "finegray_weighted",
  paste("fg <- finegray(Surv(time, factor(status)) ~ treated + x + id, etype = 'event', weights = w);",
        "coxph(Surv(fgstart, fgstop, fgstatus) ~ treated + x, weights = W, cluster = id, eps = 1e-14) with",
        "W = fg$fgwt (unweighted censoring KM) or W = w * G_w(fgstart)/G_w(T) on rows after the own time T, G_w = survfit(Surv(time, status == 0) ~ 1, weights = w);",
        "survfit(fit, newdata = profiles) at the event times"),
  vals,
  data = wd
)
