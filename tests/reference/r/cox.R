# Cox regression (coxph) and PH test (cox.zph, transform = "km") fixtures.
# Covariates that are categorical are passed as character columns so that R's
# factor() and Python's sorted levels give the same reference level.
cox_values <- function(fit, zph_terms = TRUE, residuals = FALSE, conf_level = 0.95) {
  s <- summary(fit, conf.int = conf_level)
  z <- cox.zph(fit, transform = "km", terms = zph_terms)
  # summary.coxph rounds the printed statistics; record the unrounded ones it is built from
  df <- sum(!is.na(coef(fit)))
  test3 <- function(stat) list(statistic = unname(stat), df = df, p = pchisq(unname(stat), df, lower.tail = FALSE))
  v <- list(
    terms = names(coef(fit)),
    coef = unname(coef(fit)),
    se = unname(sqrt(diag(vcov(fit)))),
    naive_se = unname(sqrt(diag(if (is.null(fit$naive.var)) fit$var else fit$naive.var))),
    var = unname(vcov(fit)),
    loglik = fit$loglik,
    iter = fit$iter,
    n = fit$n,
    nevent = fit$nevent,
    lr = test3(2 * diff(fit$loglik)),
    wald = test3(fit$wald.test),
    score = test3(fit$score),
    concordance = unname(fit$concordance["concordance"]),
    concordance_se = unname(fit$concordance["std"]),
    concordance_counts = as.list(fit$concordance[c("concordant", "discordant", "tied.x")]),
    zph = list(rows = rownames(z$table), chisq = unname(z$table[, "chisq"]),
               df = unname(z$table[, "df"]), p = unname(z$table[, "p"]))
  )
  if (!is.null(fit$rscore)) v$robust_score <- test3(fit$rscore)
  if (residuals) v$score_residuals <- unname(residuals(fit, type = "score"))
  bh <- basehaz(fit, centered = FALSE)
  v$basehaz <- list(time = bh$time, hazard = bh$hazard,
                    strata = if (is.null(bh$strata)) NULL else as.character(bh$strata))
  # summary.coxph's columns: hr and its Wald interval from $conf.int, z and p from
  # $coefficients (for robust/cluster fits these use the robust se, as summary does)
  v$summary <- list(conf_level = conf_level,
                    hr = unname(s$conf.int[, "exp(coef)"]),
                    lower = unname(s$conf.int[, 3]), upper = unname(s$conf.int[, 4]),
                    z = unname(s$coefficients[, "z"]), p = unname(s$coefficients[, "Pr(>|z|)"]),
                    se = unname(s$coefficients[, if (is.null(fit$naive.var)) "se(coef)" else "robust se"]))
  v
}

# lung: complete cases of the variables used (NAs dropped, 213 of 228 rows kept);
# sex and ph.ecog as character categories (ecog "3" has a single patient).
d <- na.omit(lung[, c("time", "status", "age", "sex", "ph.ecog", "wt.loss")])
d$status <- d$status - 1L
d$sex <- ifelse(d$sex == 1, "male", "female")
d$ecog <- as.character(d$ph.ecog)
call <- 'coxph(Surv(time, status) ~ age + sex + ecog + wt.loss, data = na.omit(lung[, c("time","status","age","sex","ph.ecog","wt.loss")]), ties = "efron")'
fit <- coxph(Surv(time, status) ~ age + sex + ecog + wt.loss, data = d)
v <- cox_values(fit)
profiles <- data.frame(age = c(60, 70), sex = c("male", "female"), ecog = c("0", "2"), wt.loss = c(0, 5))
v$survfit <- list(times = c(100, 300), profiles = profiles,
                  surv = unname(summary(survfit(fit, newdata = profiles), times = c(100, 300))$surv))
write_reference("cox_lung", paste(call, "; survfit(fit, newdata = profiles)"), v, data = d)
fit <- coxph(Surv(time, status) ~ age + sex + ecog + wt.loss, data = d, ties = "breslow", robust = TRUE)
write_reference("cox_lung_breslow_robust",
                sub('ties = "efron"', 'ties = "breslow", robust = TRUE', call), cox_values(fit), data = d)

# veteran: celltype categorical (4 levels), trt as 1/2 numeric
d <- veteran
d$celltype <- as.character(d$celltype)
fit <- coxph(Surv(time, status) ~ trt + celltype + karno + diagtime + age + prior, data = d)
v <- cox_values(fit)
z <- cox.zph(fit, transform = "km", terms = FALSE)
v$zph_columns <- list(rows = rownames(z$table), chisq = unname(z$table[, "chisq"]),
                      df = unname(z$table[, "df"]), p = unname(z$table[, "p"]))
write_reference("cox_veteran", "coxph(Surv(time, status) ~ trt + celltype + karno + diagtime + age + prior, data = veteran); cox.zph(fit, 'km') with terms = TRUE and FALSE", v, data = d)

# random cohort with whole-day ties, a binary treatment, a 3-level category, case weights,
# strata, matched-set clusters and delayed entry
set.seed(20261125)
n <- 400
sim <- data.frame(
  trt = rbinom(n, 1, 0.4),
  grp = sample(c("a", "b", "c"), n, replace = TRUE),
  x = rnorm(n),
  site = sample(c("north", "south"), n, replace = TRUE),
  set = rep(seq_len(n / 4), each = 4),
  w = round(runif(n, 0.5, 3), 3)
)
lp <- 0.5 * sim$trt - 0.3 * (sim$grp == "b") + 0.4 * (sim$grp == "c") + 0.3 * sim$x
tt <- rexp(n, 0.05 * exp(lp))
cc <- runif(n, 5, 60)
sim$time <- pmax(1, ceiling(pmin(tt, cc)))
sim$status <- as.integer(tt <= cc)
sim$entry <- pmin(sim$time - 1, floor(runif(n, 0, 10)) * rbinom(n, 1, 0.5))
sim$entry <- ifelse(sim$entry < 0, 0, sim$entry)

f <- Surv(time, status) ~ trt + grp + x
fit <- coxph(f, data = sim, ties = "efron")
write_reference("cox_ties_efron", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, ties = 'efron')", cox_values(fit, residuals = TRUE), data = sim)
fit <- coxph(f, data = sim, ties = "breslow")
write_reference("cox_ties_breslow", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, ties = 'breslow')", cox_values(fit), data = sim)
fit <- coxph(f, data = sim, weights = w)
write_reference("cox_weights", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, weights = w)", cox_values(fit), data = sim)
fit <- coxph(Surv(time, status) ~ trt + grp + x + strata(site), data = sim)
write_reference("cox_strata", "coxph(Surv(time, status) ~ trt + grp + x + strata(site), data = sim)", cox_values(fit), data = sim)
fit <- coxph(f, data = sim, cluster = set)
write_reference("cox_cluster", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, cluster = set)", cox_values(fit), data = sim)
# the same cluster fit summarised with 90% intervals (summary(fit, conf.int = 0.90))
write_reference("cox_cluster_conf90", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, cluster = set); summary(fit, conf.int = 0.90)",
                cox_values(fit, conf_level = 0.90), data = sim)
fit <- coxph(f, data = sim, cluster = set, weights = w, ties = "breslow")
write_reference("cox_cluster_weights_breslow", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, cluster = set, weights = w, ties = 'breslow')", cox_values(fit), data = sim)
fit <- coxph(f, data = sim, robust = TRUE)
write_reference("cox_robust", "coxph(Surv(time, status) ~ trt + grp + x, data = sim, robust = TRUE)", cox_values(fit), data = sim)
fit <- coxph(Surv(entry, time, status) ~ trt + grp + x, data = sim)
write_reference("cox_entry", "coxph(Surv(entry, time, status) ~ trt + grp + x, data = sim)", cox_values(fit), data = sim)
fit <- coxph(Surv(entry, time, status) ~ trt + grp + x + strata(site), data = sim, weights = w, cluster = set)
write_reference("cox_entry_strata_cluster", "coxph(Surv(entry, time, status) ~ trt + grp + x + strata(site), data = sim, weights = w, cluster = set)", cox_values(fit, residuals = TRUE), data = sim)

# p = 10 covariates plus treatment, whole-day ties
set.seed(5)
n <- 1500
p10 <- as.data.frame(matrix(rnorm(n * 10), n, 10, dimnames = list(NULL, paste0("z", 1:10))))
p10$trt <- rbinom(n, 1, 0.5)
lp <- as.matrix(p10[, 1:10]) %*% seq(-0.25, 0.25, length.out = 10) + 0.4 * p10$trt
tt <- rexp(n, 0.02 * exp(lp)); cc <- runif(n, 10, 90)
p10$time <- pmax(1, ceiling(pmin(tt, cc))); p10$status <- as.integer(tt <= cc)
fit <- coxph(Surv(time, status) ~ trt + z1 + z2 + z3 + z4 + z5 + z6 + z7 + z8 + z9 + z10, data = p10)
write_reference("cox_p10", "coxph(Surv(time, status) ~ trt + z1 + ... + z10, data = p10)", cox_values(fit), data = p10)
