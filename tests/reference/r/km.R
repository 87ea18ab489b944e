# Kaplan-Meier (survfit) and log-rank (survdiff) references for
# tests/survival/test_km.py and tests/survival/test_logrank.py.
# Sourced by tests/reference/make_reference.R (which defines write_reference).

strip_strata <- function(s) if (is.null(s)) NULL else sub("^[^=]*=", "", as.character(s))

km_values <- function(fit, times) {
  s <- summary(fit, censored = TRUE)
  table <- data.frame(time = s$time, n_risk = s$n.risk, n_event = s$n.event, n_censor = s$n.censor,
                      survival = s$surv, std_err = s$std.err, lower = s$lower, upper = s$upper)
  if (!is.null(s$strata)) table$group <- strip_strata(s$strata)
  tab <- summary(fit)$table
  if (is.null(dim(tab))) tab <- t(as.matrix(tab))
  lcl <- grep("LCL$", colnames(tab)); ucl <- grep("UCL$", colnames(tab))
  median <- data.frame(n = unname(tab[, "n.max"]), events = unname(tab[, "events"]),
                       median = unname(tab[, "median"]), lower = unname(tab[, lcl]), upper = unname(tab[, ucl]))
  if (!is.null(s$strata)) median$group <- strip_strata(rownames(tab))
  at <- summary(fit, times = times, extend = TRUE)
  at_times <- data.frame(time = at$time, n_risk = at$n.risk, n_event = at$n.event, survival = at$surv,
                         std_err = at$std.err, lower = at$lower, upper = at$upper)
  if (!is.null(at$strata)) at_times$group <- strip_strata(at$strata)
  list(table = table, median = median, times = times, at_times = at_times,
       conf_type = fit$conf.type, conf_level = fit$conf.int)
}

km_reference <- function(name, data, formula, times, weights = NULL, conf.type = "log", conf.int = 0.95) {
  # survfit evaluates weights= inside data, so put them in a column of that name
  data$.case_weight <- if (is.null(weights)) 1 else data[[weights]]
  fit <- if (is.null(weights)) survfit(formula, data = data, conf.type = conf.type, conf.int = conf.int)
         else survfit(formula, data = data, weights = .case_weight, conf.type = conf.type, conf.int = conf.int)
  data$.case_weight <- NULL
  call <- sprintf("summary(survfit(%s, data, weights=%s, conf.type='%s', conf.int=%g), censored=TRUE); print(fit); summary(fit, times=, extend=TRUE)",
                  deparse1(formula), if (is.null(weights)) "NULL" else weights, conf.type, conf.int)
  values <- km_values(fit, times)
  values$weights <- weights
  write_reference(name, call, values, data = data)
}

logrank_values <- function(sd) {
  groups <- strip_strata(names(sd$n))
  list(statistic = sd$chisq, df = length(sd$n) - 1, p_value = pchisq(sd$chisq, length(sd$n) - 1, lower.tail = FALSE),
       table = data.frame(group = groups, n = as.numeric(sd$n), observed = as.numeric(sd$obs),
                          expected = as.numeric(sd$exp)),
       variance = sd$var)
}

logrank_reference <- function(name, data, formula) {
  sd <- survdiff(formula, data = data)
  # observed/expected are matrices per stratum when stratified; survdiff prints their row sums.
  if (is.matrix(sd$obs)) { sd$obs <- rowSums(sd$obs); sd$exp <- rowSums(sd$exp) }
  write_reference(name, paste0("survdiff(", deparse1(formula), ", data)"), logrank_values(sd), data = data)
}

# --- survival::lung: event = status 2, groups by sex (1 = male, 2 = female)
lung_data <- data.frame(time = survival::lung$time, event = as.integer(survival::lung$status == 2),
                        sex = survival::lung$sex, older = as.integer(survival::lung$age >= 65))
km_reference("km_lung", lung_data, Surv(time, event) ~ 1, times = c(0, 100, 365, 730, 1000, 2000))
km_reference("km_lung_sex", lung_data, Surv(time, event) ~ sex, times = c(0, 90, 180, 365, 730))
km_reference("km_lung_sex_loglog", lung_data, Surv(time, event) ~ sex, times = c(0, 180, 365),
             conf.type = "log-log")
km_reference("km_lung_sex_plain90", lung_data, Surv(time, event) ~ sex, times = c(0, 180, 365),
             conf.type = "plain", conf.int = 0.9)
logrank_reference("logrank_lung_sex", lung_data, Surv(time, event) ~ sex)
logrank_reference("logrank_lung_sex_strata", lung_data, Surv(time, event) ~ sex + strata(older))

# --- survival::veteran: celltype has 4 groups
vet_data <- data.frame(time = survival::veteran$time, event = survival::veteran$status,
                       trt = survival::veteran$trt, celltype = as.character(survival::veteran$celltype))
km_reference("km_veteran_celltype", vet_data, Surv(time, event) ~ celltype, times = c(0, 30, 90, 180, 365),
             conf.type = "log-log")
logrank_reference("logrank_veteran_celltype", vet_data, Surv(time, event) ~ celltype)
logrank_reference("logrank_veteran_trt_strata", vet_data, Surv(time, event) ~ trt + strata(celltype))

# --- random data with whole-day ties, groups, strata and case weights
set.seed(20261125)
n <- 400
arm <- sample(c("control", "magnesium", "other"), n, replace = TRUE, prob = c(0.45, 0.45, 0.1))
site <- sample(c("A", "B"), n, replace = TRUE)
event_day <- ceiling(rexp(n, ifelse(arm == "magnesium", 1 / 60, 1 / 45)))
censor_day <- ceiling(runif(n, 10, 120))
tied_data <- data.frame(time = pmin(event_day, censor_day), event = as.integer(event_day <= censor_day),
                        arm = arm, site = site,
                        count_weight = sample(1:3, n, replace = TRUE),
                        ipw = round(runif(n, 0.2, 3), 3))
km_reference("km_tied_arm", tied_data, Surv(time, event) ~ arm, times = seq(0, 90, by = 15))
km_reference("km_tied_arm_intweights", tied_data, Surv(time, event) ~ arm, times = seq(0, 90, by = 15),
             weights = "count_weight")
km_reference("km_tied_ipw_loglog", tied_data, Surv(time, event) ~ arm, times = seq(0, 90, by = 15),
             weights = "ipw", conf.type = "log-log")
km_reference("km_tied_ipw_plain", tied_data, Surv(time, event) ~ 1, times = seq(0, 90, by = 15),
             weights = "ipw", conf.type = "plain")
logrank_reference("logrank_tied_arm", tied_data, Surv(time, event) ~ arm)
logrank_reference("logrank_tied_arm_strata", tied_data, Surv(time, event) ~ arm + strata(site))

# --- medians on a flat exactly at 0.5 (midpoint rule) and curves ending at 0.5
flat_data <- data.frame(time = c(1, 2, 3, 4, 5, 6, 1, 1, 2, 2, 3, 3, 4, 4, 1, 2, 3, 4),
                        event = c(1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0),
                        case = rep(c("flat_mid", "ties_mid", "ends_half"), c(6, 8, 4)))
km_reference("km_median_rules", flat_data, Surv(time, event) ~ case, times = c(0, 2, 4))
