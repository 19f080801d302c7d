/* Jaro, Jaro-Winkler and Levenshtein over one character type; included by similarity.c twice:
 * with MLP_CHAR uint8_t and MLP_ASCII 1 (pure ASCII strings, read in place as bytes) and with
 * MLP_CHAR uint32_t and MLP_ASCII 0 (decoded code points). No include guard on purpose. */

#define MLP_CAT_(a, b) a##b
#define MLP_CAT(a, b) MLP_CAT_(a, b)
#define MLP_FN(name) MLP_CAT(name, MLP_SUFFIX)

static inline uint64_t MLP_FN(PmGet)(const MlpPatternMatch* pm, MLP_CHAR c) {
#if MLP_ASCII
  return pm->ascii[c];
#else
  return PmGetWide(pm, c);
#endif
}

static inline void MLP_FN(PmBuild)(MlpPatternMatch* pm, const MLP_CHAR* s, int64_t n) {
#if MLP_ASCII
  for (int64_t i = 0; i < n; i++) pm->ascii[s[i]] |= (uint64_t)1 << i;
#else
  PmBuildWide(pm, s, n);
#endif
}

static inline void MLP_FN(PmClear)(MlpPatternMatch* pm, const MLP_CHAR* s, int64_t n) {
#if MLP_ASCII
  for (int64_t i = 0; i < n; i++) pm->ascii[s[i]] = 0;
#else
  PmClearWide(pm, s, n);
#endif
}

static double MLP_FN(Jaro)(const MLP_CHAR* s1, int64_t len1, const MLP_CHAR* s2, int64_t len2,
                           MlpScratch* scratch) {
  if (len1 == 0 && len2 == 0) return 1.0;
  if (len1 == 0 || len2 == 0) return 0.0;
  if (len1 == 1 && len2 == 1) return s1[0] == s2[0] ? 1.0 : 0.0;
  /* Parts of the longer string beyond the window of the shorter one can never match. */
  int64_t n1 = len1;
  int64_t n2 = len2;
  int64_t bound;
  if (len2 > len1) {
    bound = len2 / 2 - 1;
    if (len2 > len1 + bound) n2 = len1 + bound;
  } else {
    bound = len1 / 2 - 1;
    if (len1 > len2 + bound) n1 = len2 + bound;
  }

  int64_t common = 0;
  int64_t trans = 0;
  if (n1 <= 64 && n2 <= 64) {
    /* Bit-parallel: s2's positions of each character in one word; the window of s1[i] is the
     * bits [i - bound, i + bound] of s2, slid one bit per step. Each s1[i] takes the lowest
     * unmatched s2 position in its window, as the classic greedy loop does. */
    MlpPatternMatch* pm = &scratch->pm;
    MLP_FN(PmBuild)(pm, s2, n2);
    uint64_t flags1 = 0;
    uint64_t flags2 = 0;
    int64_t first_hi = bound < n2 - 1 ? bound : n2 - 1;
    uint64_t window = first_hi >= 63 ? ~(uint64_t)0 : (((uint64_t)1 << (first_hi + 1)) - 1);
    for (int64_t i = 0; i < n1; i++) {
      uint64_t candidates = MLP_FN(PmGet)(pm, s1[i]) & window & ~flags2;
      flags2 |= candidates & (~candidates + 1);
      flags1 |= (uint64_t)(candidates != 0) << i;
      common += candidates != 0;
      if (i + bound + 1 < n2) window |= (uint64_t)1 << (i + bound + 1);
      if (i >= bound) window &= ~((uint64_t)1 << (i - bound));
    }
    MLP_FN(PmClear)(pm, s2, n2);
    if (common == 0) return 0.0;
    while (flags1) {
      int i = Ctz64(flags1);
      int j = Ctz64(flags2);
      trans += s1[i] != s2[j];
      flags1 &= flags1 - 1;
      flags2 &= flags2 - 1;
    }
  } else {
    if (Grow((void**)&scratch->flags, &scratch->flags_capacity, n1 + n2, 1) != 0) {
      scratch->out_of_memory = 1;
      return 0.0;
    }
    uint8_t* flags1 = scratch->flags;
    uint8_t* flags2 = scratch->flags + n1;
    memset(flags1, 0, (size_t)(n1 + n2));
    for (int64_t i = 0; i < n1; i++) {
      int64_t lo = i - bound > 0 ? i - bound : 0;
      int64_t hi = i + bound < n2 - 1 ? i + bound : n2 - 1;
      for (int64_t j = lo; j <= hi; j++) {
        if (!flags2[j] && s2[j] == s1[i]) {
          flags1[i] = flags2[j] = 1;
          common++;
          break;
        }
      }
    }
    if (common == 0) return 0.0;
    int64_t k = 0;
    for (int64_t i = 0; i < n1; i++) {
      if (!flags1[i]) continue;
      while (!flags2[k]) k++;
      trans += s1[i] != s2[k];
      k++;
    }
  }
  return JaroFormula(len1, len2, common, trans);
}

static double MLP_FN(JaroWinkler)(const MLP_CHAR* s1, int64_t len1, const MLP_CHAR* s2,
                                  int64_t len2, double prefix_weight, double boost_threshold,
                                  MlpScratch* scratch) {
  int64_t max_prefix = len1 < len2 ? len1 : len2;
  if (max_prefix > 4) max_prefix = 4;
  int64_t prefix = 0;
  while (prefix < max_prefix && s1[prefix] == s2[prefix]) prefix++;
  double sim = MLP_FN(Jaro)(s1, len1, s2, len2, scratch);
  if (sim > boost_threshold) sim += (double)prefix * prefix_weight * (1.0 - sim);
  return sim;
}

static int64_t MLP_FN(Levenshtein)(const MLP_CHAR* s1, int64_t len1, const MLP_CHAR* s2,
                                   int64_t len2, MlpScratch* scratch) {
  /* Common prefixes and suffixes never change the distance. */
  while (len1 > 0 && len2 > 0 && s1[0] == s2[0]) {
    s1++;
    s2++;
    len1--;
    len2--;
  }
  while (len1 > 0 && len2 > 0 && s1[len1 - 1] == s2[len2 - 1]) {
    len1--;
    len2--;
  }
  if (len1 == 0) return len2;
  if (len2 == 0) return len1;
  if (len1 > len2) {
    const MLP_CHAR* s = s1;
    s1 = s2;
    s2 = s;
    int64_t n = len1;
    len1 = len2;
    len2 = n;
  }
  if (len1 <= 64) {
    /* Hyyro 2003: the pattern s1 in one machine word, one step per character of s2. */
    MlpPatternMatch* pm = &scratch->pm;
    MLP_FN(PmBuild)(pm, s1, len1);
    uint64_t vp = len1 == 64 ? ~(uint64_t)0 : (((uint64_t)1 << len1) - 1);
    uint64_t vn = 0;
    uint64_t last = (uint64_t)1 << (len1 - 1);
    int64_t distance = len1;
    for (int64_t j = 0; j < len2; j++) {
      uint64_t pm_j = MLP_FN(PmGet)(pm, s2[j]);
      uint64_t x = pm_j | vn;
      uint64_t d0 = (((x & vp) + vp) ^ vp) | x;
      uint64_t hp = vn | ~(d0 | vp);
      uint64_t hn = vp & d0;
      distance += (hp & last) != 0;
      distance -= (hn & last) != 0;
      hp = (hp << 1) | 1;
      hn = hn << 1;
      vp = hn | ~(d0 | hp);
      vn = hp & d0;
    }
    MLP_FN(PmClear)(pm, s1, len1);
    return distance;
  }
  /* Both strings are long: the same recurrence on ceil(len1 / 64) words per step, each word
   * passing its horizontal deltas (the top bit) to the next as carries (Hyyro's block form). */
  int64_t words = (len1 + 63) / 64;
  if (GrowBlocks(scratch, words) != 0 ||
      Grow((void**)&scratch->row, &scratch->row_capacity, 2 * words, sizeof(int64_t)) != 0) {
    scratch->out_of_memory = 1;
    return 0;
  }
  MlpPatternMatch* blocks = scratch->blocks;
  for (int64_t w = 0; w < words; w++) {
    int64_t n = len1 - 64 * w < 64 ? len1 - 64 * w : 64;
    MLP_FN(PmBuild)(&blocks[w], s1 + 64 * w, n);
  }
  uint64_t* vps = (uint64_t*)scratch->row;
  uint64_t* vns = vps + words;
  for (int64_t w = 0; w < words; w++) {
    vps[w] = ~(uint64_t)0;
    vns[w] = 0;
  }
  uint64_t last = (uint64_t)1 << ((len1 - 1) % 64);
  int64_t distance = len1;
  for (int64_t j = 0; j < len2; j++) {
    uint64_t hp_carry = 1;
    uint64_t hn_carry = 0;
    MLP_CHAR c = s2[j];
    for (int64_t w = 0; w < words; w++) {
      uint64_t vp = vps[w];
      uint64_t vn = vns[w];
      uint64_t x = MLP_FN(PmGet)(&blocks[w], c) | hn_carry;
      uint64_t d0 = (((x & vp) + vp) ^ vp) | x | vn;
      uint64_t hp = vn | ~(d0 | vp);
      uint64_t hn = d0 & vp;
      uint64_t hp_in = hp_carry;
      uint64_t hn_in = hn_carry;
      if (w < words - 1) {
        hp_carry = hp >> 63;
        hn_carry = hn >> 63;
      } else {
        hp_carry = (hp & last) != 0;
        hn_carry = (hn & last) != 0;
      }
      hp = (hp << 1) | hp_in;
      hn = (hn << 1) | hn_in;
      vps[w] = hn | ~(d0 | hp);
      vns[w] = hp & d0;
    }
    distance += (int64_t)hp_carry - (int64_t)hn_carry;
  }
  for (int64_t w = 0; w < words; w++) {
    int64_t n = len1 - 64 * w < 64 ? len1 - 64 * w : 64;
    MLP_FN(PmClear)(&blocks[w], s1 + 64 * w, n);
  }
  return distance;
}

static double MLP_FN(Score)(int is_jaro_winkler, const MLP_CHAR* s1, int64_t len1,
                            const MLP_CHAR* s2, int64_t len2, double prefix_weight,
                            double boost_threshold, MlpScratch* scratch) {
  if (is_jaro_winkler) {
    return MLP_FN(JaroWinkler)(s1, len1, s2, len2, prefix_weight, boost_threshold, scratch);
  }
  int64_t longest = len1 > len2 ? len1 : len2;
  if (longest == 0) return 1.0;
  int64_t distance = MLP_FN(Levenshtein)(s1, len1, s2, len2, scratch);
  return 1.0 - (double)distance / (double)longest;
}

#undef MLP_FN
#undef MLP_CAT
#undef MLP_CAT_
