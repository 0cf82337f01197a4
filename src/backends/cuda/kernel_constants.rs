//! The constants of `kernels/` that the host needs to launch the kernels, in one place: each
//! mirrors a `#define` of `kernels/common.cuh`, `kernels/linear_attention/params.cuh` or the
//! kernel file named, and a test below reads those sources and checks every value and formula
//! here (and the model's timestep width) against them.

/// Threads per block of every kernel (`LDT_THREADS`).
pub(crate) const THREADS: u32 = 256;
/// Elements per block of the grid-stride elementwise kernels (`LDT_ELEMS_PER_BLOCK`).
pub(crate) const ELEMS_PER_BLOCK: u64 = 2048;
/// Tokens per block of pass 1 of linear attention (`LINATTN_CHUNK`, the minimum we use).
pub(crate) const ATTENTION_CHUNK: usize = 256;
/// Tokens per block of pass 3 of linear attention (`LINATTN_APPLY_TILE`).
pub(crate) const ATTENTION_APPLY_TILE: u32 = 128;
/// Largest head dimension the attention kernels handle (`LINATTN_MAX_HEAD_DIM`).
pub(crate) const MAX_HEAD_DIM: usize = 128;

/// Largest h of the LayerNorm kernels' one-warp-per-row path (`LN_WARP_MAX_H`,
/// `kernels/layer_norm_modulate.cu`).
pub(crate) const NORM_WARP_MAX_H: usize = 1024;
/// Output features per block of the small-linear kernel (`SL_OUT_PER_BLOCK`,
/// `kernels/small_linear.cu`).
pub(crate) const SMALL_LINEAR_OUT_PER_BLOCK: usize = 32;

/// The head dimension `d` padded to 32, 64 or 128 (`LINATTN_PAD`): the head-dim class of the
/// attention kernel instance that runs it.
pub(crate) const fn attention_padded_head_dim(d: usize) -> usize {
    if d <= 32 {
        32
    } else if d <= 64 {
        64
    } else {
        128
    }
}

/// Dynamic shared memory of the attention apply kernel for head dimension `d`, in bytes
/// (`LINATTN_APPLY_SMEM`): the state S as DP rows of DP + 8 floats (padded against bank
/// conflicts) and z, DP = [`attention_padded_head_dim`]`(d)`.
pub(crate) const fn attention_apply_shared_bytes(d: usize) -> usize {
    let dp = attention_padded_head_dim(d);
    (dp * (dp + 8) + dp) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The `#define`s of the headers the host mirrors.
    const HEADERS: [&str; 5] = [
        include_str!("../../../kernels/common.cuh"),
        include_str!("../../../kernels/linear_attention/params.cuh"),
        include_str!("../../../kernels/layer_norm_modulate.cu"),
        include_str!("../../../kernels/small_linear.cu"),
        include_str!("../../../kernels/conditioning.cu"),
    ];

    /// A `#define`: its parameters (a function-like macro has one) and its body.
    struct Macro {
        params: Vec<String>,
        body: String,
    }

    fn defines() -> HashMap<String, Macro> {
        let mut macros = HashMap::new();
        for line in HEADERS.iter().flat_map(|h| h.lines()) {
            let Some(rest) = line.trim().strip_prefix("#define ") else {
                continue;
            };
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, rest) = rest.split_at(name_end);
            let (params, body) = match rest.strip_prefix('(') {
                Some(rest) => {
                    let (params, body) = rest.split_once(')').expect("a macro's parameter list");
                    let params = params.split(',').map(|p| p.trim().to_string()).collect();
                    (params, body)
                }
                None => (Vec::new(), rest),
            };
            let body = body.split("//").next().unwrap_or("").trim().to_string();
            macros.insert(name.to_string(), Macro { params, body });
        }
        macros
    }

    /// Evaluates the integer C expressions of the headers' macros: literals, macro names and
    /// calls, parentheses, `*`, `/`, `+`, `-`, `<=` and `?:`.
    struct Eval<'a> {
        macros: &'a HashMap<String, Macro>,
        tokens: Vec<String>,
        at: usize,
        vars: HashMap<String, i64>,
    }

    impl<'a> Eval<'a> {
        fn run(macros: &'a HashMap<String, Macro>, text: &str, vars: HashMap<String, i64>) -> i64 {
            let mut tokens = Vec::new();
            let mut chars = text.chars().peekable();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    chars.next();
                } else if c.is_ascii_alphanumeric() || c == '_' {
                    let mut word = String::new();
                    while let Some(&c) = chars
                        .peek()
                        .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
                    {
                        word.push(c);
                        chars.next();
                    }
                    tokens.push(word);
                } else if c == '<' {
                    chars.next();
                    assert_eq!(chars.next(), Some('='), "only <= is supported");
                    tokens.push("<=".into());
                } else {
                    tokens.push(c.to_string());
                    chars.next();
                }
            }
            let mut eval = Eval {
                macros,
                tokens,
                at: 0,
                vars,
            };
            let value = eval.ternary();
            assert_eq!(eval.at, eval.tokens.len(), "trailing tokens in `{text}`");
            value
        }

        fn peek(&self) -> Option<&str> {
            self.tokens.get(self.at).map(String::as_str)
        }

        fn take(&mut self, expected: &str) {
            assert_eq!(self.peek(), Some(expected));
            self.at += 1;
        }

        fn ternary(&mut self) -> i64 {
            let condition = self.comparison();
            if self.peek() != Some("?") {
                return condition;
            }
            self.take("?");
            let yes = self.ternary();
            self.take(":");
            let no = self.ternary();
            if condition != 0 { yes } else { no }
        }

        fn comparison(&mut self) -> i64 {
            let left = self.sum();
            if self.peek() == Some("<=") {
                self.take("<=");
                return i64::from(left <= self.sum());
            }
            left
        }

        fn sum(&mut self) -> i64 {
            let mut value = self.product();
            while let Some(op) = self.peek().filter(|t| *t == "+" || *t == "-") {
                let plus = op == "+";
                self.at += 1;
                let right = self.product();
                value = if plus { value + right } else { value - right };
            }
            value
        }

        /// `*` and `/` (C's truncating integer division), left to right.
        fn product(&mut self) -> i64 {
            let mut value = self.primary();
            while let Some(op) = self.peek().filter(|t| *t == "*" || *t == "/") {
                let times = op == "*";
                self.at += 1;
                let right = self.primary();
                value = if times { value * right } else { value / right };
            }
            value
        }

        fn primary(&mut self) -> i64 {
            let token = self.peek().expect("an operand").to_string();
            self.at += 1;
            if token == "(" {
                let value = self.ternary();
                self.take(")");
                return value;
            }
            if let Ok(number) = token.parse::<i64>() {
                return number;
            }
            if let Some(&value) = self.vars.get(&token) {
                return value;
            }
            let Some(m) = self.macros.get(&token) else {
                panic!("unknown name `{token}`");
            };
            let mut vars = HashMap::new();
            if !m.params.is_empty() {
                self.take("(");
                for (i, param) in m.params.iter().enumerate() {
                    if i > 0 {
                        self.take(",");
                    }
                    vars.insert(param.clone(), self.ternary());
                }
                self.take(")");
            }
            Eval::run(self.macros, &m.body, vars)
        }
    }

    fn value(macros: &HashMap<String, Macro>, name: &str) -> i64 {
        Eval::run(macros, name, HashMap::new())
    }

    fn call(macros: &HashMap<String, Macro>, name: &str, d: usize) -> i64 {
        Eval::run(macros, &format!("{name}({d})"), HashMap::new())
    }

    #[test]
    fn host_constants_match_the_kernel_headers() {
        let macros = defines();
        assert_eq!(value(&macros, "LDT_THREADS"), i64::from(THREADS));
        assert_eq!(
            value(&macros, "LDT_ELEMS_PER_BLOCK") as u64,
            ELEMS_PER_BLOCK
        );
        assert_eq!(value(&macros, "LINATTN_CHUNK") as usize, ATTENTION_CHUNK);
        assert_eq!(
            value(&macros, "LINATTN_APPLY_TILE"),
            i64::from(ATTENTION_APPLY_TILE)
        );
        assert_eq!(
            value(&macros, "LINATTN_MAX_HEAD_DIM") as usize,
            MAX_HEAD_DIM
        );
        assert_eq!(value(&macros, "LN_WARP_MAX_H") as usize, NORM_WARP_MAX_H);
        assert_eq!(
            value(&macros, "SL_OUT_PER_BLOCK") as usize,
            SMALL_LINEAR_OUT_PER_BLOCK
        );
        assert_eq!(
            value(&macros, "LDT_DIT_TIMESTEP_FREQUENCIES") as usize,
            crate::model::embedding::DIT_TIMESTEP_FREQUENCIES
        );
        for d in 1..=MAX_HEAD_DIM {
            assert_eq!(
                call(&macros, "LINATTN_PAD", d) as usize,
                attention_padded_head_dim(d),
                "d = {d}"
            );
            assert_eq!(
                call(&macros, "LINATTN_APPLY_SMEM", d) as usize,
                attention_apply_shared_bytes(d),
                "d = {d}"
            );
        }
        // The values kernels/README.md documents.
        assert_eq!(attention_apply_shared_bytes(32), 5_248);
        assert_eq!(attention_apply_shared_bytes(64), 18_688);
        assert_eq!(attention_apply_shared_bytes(128), 70_144);
    }
}
