// KgBench.exe: the Jupyter Kernel Gateway peer (notebook-http mode), called from C# with HttpClient the way a C# app
// would call a notebook published as an HTTP API: JSON in, text out; arrays as base64 in JSON.
//
//   mono KgBench.exe <base url> [small=N] [big=N] [n=4096] [timeout_s=120]
// The notebook (written by run.py) answers POST /add_ints {"a":2,"b":40} with "42" and
// POST /inc {"shape":[n,n],"data":"<base64 float32>"} with the base64 of a + 1.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Text;
using static Measure;

static class KgBench
{

    static int Main(string[] args)
    {
        if (args.Length < 1) { Console.Error.WriteLine("usage: mono KgBench.exe <base url> [small=N] [big=N] [n=N] [timeout_s=S]"); return 2; }
        string url = args[0].TrimEnd('/');
        int small = 200, bigCalls = 1, n = 4096, timeoutS = 120;
        for (int i = 1; i < args.Length; i++)
        {
            string[] kv = args[i].Split('=');
            int v = int.Parse(kv[1], Inv);
            if (kv[0] == "small") small = v; else if (kv[0] == "big") bigCalls = v; else if (kv[0] == "n") n = v; else if (kv[0] == "timeout_s") timeoutS = v;
        }
        bool ok = true;
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(timeoutS) })
        {
            var body = "{\"a\": 2, \"b\": 40}";
            for (int i = 0; i < 10; i++) Post(http, url + "/add_ints", body);
            var ts = new List<double>(small);
            for (int i = 0; i < small; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                string r = Post(http, url + "/add_ints", body);
                ts.Add(Us(t0));
                if (r.Trim() != "42") { Console.Error.WriteLine("CHECK FAILED: kernel gateway add_ints returned " + r); ok = false; break; }
            }
            Report("kg_add_ints", ts);

            var src = new float[n * n];
            for (int i = 0; i < src.Length; i++) src[i] = i % 1000;
            var tb = new List<double>(bigCalls);
            for (int c = 0; c < bigCalls; c++)
            {
                long t0 = Stopwatch.GetTimestamp();
                var bytes = new byte[src.Length * 4];
                Buffer.BlockCopy(src, 0, bytes, 0, bytes.Length);
                var sb = new StringBuilder(bytes.Length * 4 / 3 + 64);
                sb.Append("{\"shape\": [").Append(n).Append(", ").Append(n).Append("], \"data\": \"").Append(Convert.ToBase64String(bytes)).Append("\"}");
                string r;
                try { r = Post(http, url + "/inc", sb.ToString()); }
                catch (Exception e)
                {
                    Console.WriteLine("SKIP kg_big no answer within " + timeoutS + " s for " + n + "x" + n + " float32 (" + e.GetBaseException().Message + ")");
                    return ok ? 0 : 1;
                }
                byte[] back = Convert.FromBase64String(r.Trim());
                var result = new float[src.Length];
                Buffer.BlockCopy(back, 0, result, 0, Math.Min(back.Length, result.Length * 4));
                tb.Add(Us(t0));
                if (back.Length != bytes.Length) { Console.Error.WriteLine("CHECK FAILED: kernel gateway inc returned " + back.Length + " bytes"); ok = false; break; }
                for (int i = 0; i < src.Length; i += 4099)
                    if (result[i] != src[i] + 1) { Console.Error.WriteLine("CHECK FAILED: kernel gateway inc element " + i); ok = false; break; }
            }
            if (tb.Count > 0) Report("kg_big", tb);
        }
        return ok ? 0 : 1;
    }

    static string Post(HttpClient http, string url, string json)
    {
        using (var content = new ByteArrayContent(Encoding.UTF8.GetBytes(json)))
        {
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using (HttpResponseMessage resp = http.PostAsync(url, content).Result)
            {
                string text = resp.Content.ReadAsStringAsync().Result;
                if (!resp.IsSuccessStatusCode) throw new InvalidOperationException("HTTP " + (int)resp.StatusCode + " from " + url + ": " + text);
                return text;
            }
        }
    }
}
