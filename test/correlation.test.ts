import { test } from 'node:test';
import assert from 'node:assert/strict';
import { betaRegularized, kendallTauB, normalTwoSided, ranks, spearman, studentTwoSided } from '../src/store/correlation.ts';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('ranks average ties', () => {
  assert.deepEqual(ranks([10, 30, 20, 30, 10]), [1.5, 4.5, 3, 4.5, 1.5]);
});

test('spearman and kendall on a hand-worked case with one tie in y', () => {
  // x = 1..5, y = 5 6 7 8 7. Ranks of y: 1 2 3.5 5 3.5; deviations from 3: x -2 -1 0 1 2, y -2 -1 .5 2 .5.
  // sxy = 4+1+0+2+1 = 8, sxx = 10, syy = 9.5  ->  rho = 8 / sqrt(95).
  const x = [1, 2, 3, 4, 5];
  const y = [5, 6, 7, 8, 7];
  const s = spearman(x, y);
  close(s.r, 8 / Math.sqrt(95), 1e-12, 'rho');
  // t = rho * sqrt(3 / (1 - rho^2)), Student t with 3 df; scipy.stats.spearmanr gives p = 0.088587005.
  close(s.p, 0.08858700531354384, 1e-9, 'rho p');
  // Pairs: 8 concordant, 1 discordant (8 -> 7), 1 tied in y (7, 7): S = 7, n0 = 10, ties in y = 1.
  // tau_b = 7 / sqrt(10 * 9). var S = (5*4*15 - 2*1*9) / 18 = 282/18; z = 7 / sqrt(282/18).
  const k = kendallTauB(x, y);
  close(k.r, 7 / Math.sqrt(90), 1e-12, 'tau');
  close(k.p, normalTwoSided(7 / Math.sqrt(282 / 18)), 1e-12, 'tau p formula');
  close(k.p, 0.07697417298126674, 2e-7, 'tau p scipy');
});

test('ties in a binary feature (how tree features look)', () => {
  // x = 0 0 1 1 1 -> ranks 1.5 1.5 4 4 4; y = 3 1 2 5 4 -> ranks 3 1 2 5 4.
  // dx = -1.5 -1.5 1 1 1, dy = 0 -2 -1 2 1: sxy = 5, sxx = 7.5, syy = 10 -> rho = 5 / sqrt(75).
  const x = [0, 0, 1, 1, 1];
  const y = [3, 1, 2, 5, 4];
  close(spearman(x, y).r, 5 / Math.sqrt(75), 1e-12, 'rho');
  // Pairs across groups: from y=3: -,+,+ (=+1); from y=1: +,+,+ (=+3); S = 4.
  // Tied in x: 1 + 3 = 4 pairs, none in y: tau_b = 4 / sqrt((10-4) * 10).
  const k = kendallTauB(x, y);
  close(k.r, 4 / Math.sqrt(60), 1e-12, 'tau');
  close(k.p, 0.24821307898992362, 2e-7, 'tau p');
  close(spearman(x, y).p, 0.3080680092503572, 1e-9, 'rho p');
});

test('perfect, reversed and constant', () => {
  assert.equal(spearman([1, 2, 3, 4], [40, 30, 20, 10]).r, -1);
  assert.equal(kendallTauB([1, 2, 3, 4], [40, 30, 20, 10]).r, -1);
  assert.equal(kendallTauB([1, 2, 3, 4], [1, 4, 9, 16]).r, 1);
  assert.ok(Number.isNaN(spearman([1, 1, 1, 1], [1, 2, 3, 4]).r));
  assert.ok(Number.isNaN(kendallTauB([1, 1, 1, 1], [1, 2, 3, 4]).r));
  assert.ok(Number.isNaN(spearman([1, 2], [1, 2]).r));
  assert.throws(() => spearman([1, 2, 3], [1, 2]));
  assert.throws(() => kendallTauB([1, 2, NaN], [1, 2, 3]));
});

test('40 points with heavy ties: scipy 1.17 reference values', () => {
  const x = [1, 2, 3, 3, 0, 0, 3, 3, 0, 1, 3, 1, 1, 3, 1, 1, 2, 2, 0, 0, 3, 3, 3, 2, 3, 1, 1, 3, 0, 1, 0, 1, 3, 0, 1, 1, 3, 0, 2, 1];
  const y = [0.308, 0.324, 2.194, 1.907, -2.711, -1.889, 0.725, 0.478, 0.214, 0.517, 3.018, -0.812, -0.078, 2.943, 0.947, 0.963, 0.086, -1.048, 0.167, 0.109, -0.327, 0.217, 0.828, -0.345, 0.802, 0.395, 0.336, 0.394, 0.594, 1.191, 0.321, -0.518, 1.632, -0.501, 1.179, -0.772, 1.814, -0.02, -0.649, -0.014];
  const s = spearman(x, y);
  close(s.r, 0.4841052664953641, 1e-12, 'rho');
  close(s.p, 0.001550282723981449, 1e-9, 'rho p');
  const k = kendallTauB(x, y);
  close(k.r, 0.36637335926850295, 1e-12, 'tau');
  close(k.p, 0.002693209874771237, 1e-8, 'tau p');
  // Rank statistics ignore strictly increasing transforms and flip sign under negation.
  close(spearman(x, y.map(Math.exp)).r, s.r, 1e-12, 'rho exp');
  close(kendallTauB(x, y.map((v) => -v)).r, -k.r, 1e-12, 'tau neg');
  close(kendallTauB(y, x).r, k.r, 1e-12, 'tau symmetric');
});

test('distribution tails', () => {
  close(studentTwoSided(2, 10), 0.07338803477074037, 1e-10, 't p');
  close(normalTwoSided(1.96), 0.04999579029644087, 1e-7, 'z p');
  close(betaRegularized(0.5, 2, 2), 0.5, 1e-12, 'I_.5(2,2)');
  // I_x(1, 1) = x; I_x(a, 1) = x^a.
  close(betaRegularized(0.3, 1, 1), 0.3, 1e-12, 'I(1,1)');
  close(betaRegularized(0.3, 3, 1), 0.027, 1e-12, 'I(3,1)');
});
