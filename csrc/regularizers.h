/* regularizers.h - weight penalties and constraints for the engine (regularizers.c). */
#ifndef FASTNN_REGULARIZERS_H
#define FASTNN_REGULARIZERS_H

#include "fastnn.h"

/* Checks the plan's penalties and constraints (kinds, weights inside params) and sets
 * p->regularized; 0, or an FNN_EPLAN_* code with *where the penalty's index (the
 * constraint's: n_penalties + its index). */
int fnn_regularization_layout(fnn_plan *p, int *where);

/* The loss terms beside the heads' after a forward of `rows` rows: the weight penalties
 * l1 * sum|w| + l2 * sum w^2 and the terms ops add (activity penalties). */
double fnn_penalty_loss(const fnn_plan *p, int64_t rows);

/* grads += l1 * sign(w) + 2 * l2 * w over each penalised weight (after backward). */
void fnn_penalty_grads(const fnn_plan *p);

/* Projects each constrained weight, as Keras does after an optimizer update. */
void fnn_apply_constraints(const fnn_plan *p);

#endif
