package main

import (
	"math"
	"slices"
)

// median is the middle of xs (the mean of the two middle values for an even
// count); NaN for none. NaN inputs (a figure a round could not measure) are
// left out.
func median(xs []float64) float64 {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio is x/ref; NaN when either is unknown or ref is not positive, so that
// the report prints a dash rather than a made-up figure.
func ratio(x, ref float64) float64 {
	if math.IsNaN(x) || math.IsNaN(ref) || ref <= 0 {
		return math.NaN()
	}
	return x / ref
}

// perTenK is CPU seconds per 10,000 requests.
func perTenK(cpuSeconds float64, requests int64) float64 {
	if requests <= 0 || math.IsNaN(cpuSeconds) {
		return math.NaN()
	}
	return cpuSeconds / float64(requests) * 10000
}
