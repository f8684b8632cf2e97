package trace

// crc32Combine returns the IEEE CRC-32 of A||B from crc1 = CRC-32(A),
// crc2 = CRC-32(B) and len2 = len(B), as zlib's crc32_combine does: the
// CRC register after appending len2 zero bytes to A is crc1 multiplied by
// the GF(2) matrix of "shift in one zero bit" raised to the power 8*len2,
// computed by repeated squaring, and CRC is linear, so XOR-ing in crc2
// gives the CRC of the concatenation. It lets the parallel merge checksum
// sections compressed on different goroutines without reading them again.
func crc32Combine(crc1, crc2 uint32, len2 int64) uint32 {
	if len2 <= 0 {
		return crc1
	}
	var even, odd [32]uint32
	// odd: the operator for one zero bit (reflected IEEE polynomial).
	odd[0] = 0xedb88320
	row := uint32(1)
	for n := 1; n < 32; n++ {
		odd[n] = row
		row <<= 1
	}
	gf2MatrixSquare(&even, &odd) // two zero bits
	gf2MatrixSquare(&odd, &even) // four zero bits
	// Apply len2 zero bytes: the first square below gives one byte (eight
	// bits), each further square doubles it.
	for {
		gf2MatrixSquare(&even, &odd)
		if len2&1 != 0 {
			crc1 = gf2MatrixTimes(&even, crc1)
		}
		len2 >>= 1
		if len2 == 0 {
			break
		}
		gf2MatrixSquare(&odd, &even)
		if len2&1 != 0 {
			crc1 = gf2MatrixTimes(&odd, crc1)
		}
		len2 >>= 1
		if len2 == 0 {
			break
		}
	}
	return crc1 ^ crc2
}

func gf2MatrixTimes(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2MatrixSquare(square, mat *[32]uint32) {
	for n := range square {
		square[n] = gf2MatrixTimes(mat, mat[n])
	}
}
